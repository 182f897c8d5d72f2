# Keyport — Finnish (suomi). Needs review by a native speaker: among the least sure catalogues.
# Translated from en.ftl (the rules are there). Finnish software addresses the reader with the
# plain imperative (no formal plural); "varmenne" as in DVV's services; "turvalaite" = smart card
# or USB token.

## Who asks

caller-local = paikallinen sovellus (ei verkkosivusto)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } pyytää allekirjoitusta varmenteellasi.
consent-headline-batch = { $count ->
    [one] { $caller } pyytää varmenteellasi { $count } allekirjoituksen.
   *[other] { $caller } pyytää varmenteellasi { $count } allekirjoitusta.
}
consent-certificate = Varmenne: { $subject }
consent-issuer = Myöntäjä: { $issuer }
consent-algorithm = Algoritmi: { $algorithm }
consent-digest = Tiiviste: { $fingerprint }
consent-digest-batch = Koko joukon sormenjälki: { $fingerprint }
consent-algorithm-name = { $hash } ja { $key }
key-unknown = turvalaitteen avain
certificate-unreadable = (varmennetta ei voi lukea)
consent-timeout = Jos vastausta ei anneta { $seconds } s kuluessa, pyyntö hylätään.

## The PIN

pin-instruction = Allekirjoita antamalla turvalaitteen PIN-koodi.
pin-pad-instruction = Allekirjoita antamalla PIN-koodi lukijan näppäimistöllä tai paina lukijan Peruuta-näppäintä.
pin-label = PIN-koodi:
pin-wrong = Väärä PIN-koodi. Yritä uudelleen.
pin-wrong-few-tries = Väärä PIN-koodi. Yrityksiä on jäljellä vain vähän.
pin-wrong-final-try = Väärä PIN-koodi. Jäljellä on yksi yritys, ennen kuin PIN-koodi lukittuu.
pin-wrong-length = PIN-koodi on liian lyhyt tai liian pitkä. Yritä uudelleen.

## Buttons ("_" marks the key)

button-allow = _Salli
button-always = Salli _aina tälle sivustolle
button-deny = _Hylkää
button-sign = _Allekirjoita
button-cancel = _Peruuta

## Window titles and notification headings

title-signature-request = Keyport: allekirjoituspyyntö
title-allow-signing = Keyport: sallitaanko allekirjoitus?
title-pin = Keyport: PIN-koodi
title-pin-pad = Keyport: anna PIN-koodi lukijalla
notify-consent-summary = Allekirjoituspyyntö: { $caller }
notify-pin-pad-summary = Anna PIN-koodi kortinlukijalla

## The tray menu

tray-version = Keyport { $version }
tray-listening = Kuuntelee osoitteessa { $url }
tray-ready = Valmis
tray-paused = Allekirjoittaminen keskeytetty: kaikki allekirjoitukset hylätään
tray-pending = { $count ->
    [one] { $count } allekirjoituspyyntö odottaa vastaustasi
   *[other] { $count } allekirjoituspyyntöä odottaa vastaustasi
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Keskeytä allekirjoittaminen
tray-sites = Aina sallitut sivustot
tray-no-sites = Mikään sivusto ei ole aina sallittu
tray-revoke = Peru lupa: { $origin }
tray-tokens = Turvalaitteet
tray-no-token = Turvalaitetta ei ole liitetty
tray-token = { $label } ({ $library }, paikka { $slot })
tray-token-no-label = (ei nimeä)
tray-open-folder = Avaa asetus- ja lokikansio ({ $folder })
tray-quit = Lopeta Keyport
