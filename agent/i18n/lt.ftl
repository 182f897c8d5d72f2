# Keyport — Lithuanian (lietuvių). Needs review by a native speaker: among the least sure catalogues.
# Translated from en.ftl (the rules are there). Formal "jūs"; "saugos įrenginys" = smart card or
# USB token. The counted nouns stand in the genitive, where "few" and "other" agree.

## Who asks

caller-local = vietinė programa (ne svetainė)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } prašo pasirašyti jūsų sertifikatu.
consent-headline-batch = { $count ->
    [one] { $caller } prašo { $count } parašo jūsų sertifikatu.
    [few] { $caller } prašo { $count } parašų jūsų sertifikatu.
    [many] { $caller } prašo { $count } parašo jūsų sertifikatu.
   *[other] { $caller } prašo { $count } parašų jūsų sertifikatu.
}
consent-certificate = Sertifikatas: { $subject }
consent-issuer = Išdavėjas: { $issuer }
consent-algorithm = Algoritmas: { $algorithm }
consent-digest = Santrauka: { $fingerprint }
consent-digest-batch = Viso rinkinio kontrolinis kodas: { $fingerprint }
consent-algorithm-name = { $hash } su { $key }
# Instrumental: it follows "su" in consent-algorithm-name.
key-unknown = saugos įrenginio raktu
certificate-unreadable = (neperskaitomas sertifikatas)
consent-timeout = Jei per { $seconds } s neatsakysite, prašymas bus atmestas.

## The PIN

pin-instruction = Norėdami pasirašyti, įveskite saugos įrenginio PIN kodą.
pin-pad-instruction = Norėdami pasirašyti, įveskite PIN kodą skaitytuvo klaviatūra arba skaitytuve paspauskite „Atšaukti“.
pin-label = PIN kodas:
pin-wrong = Neteisingas PIN kodas. Bandykite dar kartą.
pin-wrong-few-tries = Neteisingas PIN kodas. Liko nedaug bandymų.
pin-wrong-final-try = Neteisingas PIN kodas. Liko vienas bandymas, kol PIN kodas bus užblokuotas.
pin-wrong-length = PIN kodas per trumpas arba per ilgas. Bandykite dar kartą.

## Buttons ("_" marks the key)

button-allow = _Leisti
button-always = _Visada leisti šiai svetainei
button-deny = _Atmesti
button-sign = _Pasirašyti
button-cancel = _Atšaukti

## Window titles and notification headings

title-signature-request = Keyport: prašymas pasirašyti
title-allow-signing = Keyport: leisti pasirašyti?
title-pin = Keyport: PIN kodas
title-pin-pad = Keyport: įveskite PIN kodą skaitytuve
notify-consent-summary = Prašymas pasirašyti: { $caller }
notify-pin-pad-summary = Įveskite PIN kodą kortelių skaitytuve

## The tray menu

tray-version = Keyport { $version }
tray-listening = Klausomasi adresu { $url }
tray-ready = Parengta
tray-paused = Pasirašymas pristabdytas: visi parašai atmetami
tray-pending = { $count ->
    [one] Laukiama jūsų atsakymo dėl { $count } prašymo pasirašyti
    [few] Laukiama jūsų atsakymo dėl { $count } prašymų pasirašyti
    [many] Laukiama jūsų atsakymo dėl { $count } prašymo pasirašyti
   *[other] Laukiama jūsų atsakymo dėl { $count } prašymų pasirašyti
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Pristabdyti pasirašymą
tray-sites = Visada leidžiamos svetainės
tray-no-sites = Nėra visada leidžiamų svetainių
tray-revoke = Atšaukti leidimą: { $origin }
tray-tokens = Saugos įrenginiai
tray-no-token = Neprijungtas joks saugos įrenginys
tray-token = { $label } ({ $library }, lizdas { $slot })
tray-token-no-label = (be pavadinimo)
tray-open-folder = Atverti nustatymų ir žurnalo aplanką ({ $folder })
tray-quit = Išeiti iš Keyport
