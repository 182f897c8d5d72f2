# Keyport — Croatian (hrvatski). Needs review by a native speaker: among the least sure catalogues.
# Translated from en.ftl (the rules are there). Formal "vi"; "token" for smart card or USB token.

## Who asks

caller-local = lokalna aplikacija (nije web-stranica)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } traži potpis vašim certifikatom.
consent-headline-batch = { $count ->
    [one] { $caller } traži { $count } elektronički potpis vašim certifikatom.
    [few] { $caller } traži { $count } elektronička potpisa vašim certifikatom.
   *[other] { $caller } traži { $count } elektroničkih potpisa vašim certifikatom.
}
consent-certificate = Certifikat: { $subject }
consent-issuer = Izdavatelj: { $issuer }
consent-algorithm = Algoritam: { $algorithm }
consent-digest = Sažetak: { $fingerprint }
consent-digest-batch = Otisak cijelog skupa: { $fingerprint }
consent-algorithm-name = { $hash } s { $key }
# Instrumental: it follows "s" in consent-algorithm-name.
key-unknown = ključem tokena
certificate-unreadable = (nečitljiv certifikat)
consent-timeout = Ako ne odgovorite u roku od { $seconds } s, zahtjev će biti odbijen.

## The PIN

pin-instruction = Za potpisivanje unesite PIN tokena.
pin-pad-instruction = Za potpisivanje unesite PIN na tipkovnici čitača ili na čitaču pritisnite „Odustani“.
pin-label = PIN:
pin-wrong = Pogrešan PIN. Pokušajte ponovno.
pin-wrong-few-tries = Pogrešan PIN. Preostalo je još samo nekoliko pokušaja.
pin-wrong-final-try = Pogrešan PIN. Preostao je još jedan pokušaj prije nego što se PIN zaključa.
pin-wrong-length = PIN je prekratak ili predug. Pokušajte ponovno.

## Buttons ("_" marks the key)

button-allow = _Dopusti
button-always = _Uvijek dopusti ovoj stranici
button-deny = _Odbij
button-sign = _Potpiši
button-cancel = _Odustani

## Window titles and notification headings

title-signature-request = Keyport: zahtjev za potpis
title-allow-signing = Keyport: dopustiti potpisivanje?
title-pin = Keyport: PIN
title-pin-pad = Keyport: unesite PIN na čitaču
notify-consent-summary = Zahtjev za potpis: { $caller }
notify-pin-pad-summary = Unesite PIN na čitaču kartica

## The tray menu

tray-version = Keyport { $version }
tray-listening = Osluškuje na { $url }
tray-ready = Spremno
tray-paused = Potpisivanje je pauzirano: svaki se potpis odbija
tray-pending = { $count ->
    [one] { $count } zahtjev za potpis čeka vaš odgovor
    [few] { $count } zahtjeva za potpis čekaju vaš odgovor
   *[other] { $count } zahtjeva za potpis čeka vaš odgovor
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Pauziraj potpisivanje
tray-sites = Uvijek dopuštene stranice
tray-no-sites = Nijedna stranica nije uvijek dopuštena
tray-revoke = Opozovi dopuštenje: { $origin }
tray-tokens = Tokeni
tray-no-token = Nije umetnut nijedan token
tray-token = { $label } ({ $library }, utor { $slot })
tray-token-no-label = (bez naziva)
tray-open-folder = Otvori mapu s postavkama i zapisnikom ({ $folder })
tray-quit = Zatvori Keyport
