# Keyport — Slovak (slovenčina). Needs review by a native speaker.
# Translated from en.ftl (the rules are there). Formal "vy" (vykanie); "token" for smart card or
# USB token.

## Who asks

caller-local = miestna aplikácia (nie webová stránka)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } žiada o podpis vaším certifikátom.
consent-headline-batch = { $count ->
    [one] { $caller } žiada o { $count } podpis vaším certifikátom.
    [few] { $caller } žiada o { $count } podpisy vaším certifikátom.
    [many] { $caller } žiada o { $count } podpisov vaším certifikátom.
   *[other] { $caller } žiada o { $count } podpisov vaším certifikátom.
}
consent-certificate = Certifikát: { $subject }
consent-issuer = Vydavateľ: { $issuer }
consent-algorithm = Algoritmus: { $algorithm }
consent-digest = Hash: { $fingerprint }
consent-digest-batch = Odtlačok celej sady: { $fingerprint }
consent-algorithm-name = { $hash } s { $key }
# Instrumental: it follows "s" in consent-algorithm-name.
key-unknown = kľúčom tokenu
certificate-unreadable = (nečitateľný certifikát)
consent-timeout = Bez odpovede do { $seconds } s bude žiadosť zamietnutá.

## The PIN

pin-instruction = Na podpísanie zadajte PIN tokenu.
pin-pad-instruction = Na podpísanie zadajte PIN na klávesnici čítačky alebo na čítačke stlačte „Zrušiť“.
pin-label = PIN:
pin-wrong = Nesprávny PIN. Skúste to znova.
pin-wrong-few-tries = Nesprávny PIN. Zostáva už len niekoľko pokusov.
pin-wrong-final-try = Nesprávny PIN. Zostáva jeden pokus, kým sa PIN zablokuje.
pin-wrong-length = PIN je príliš krátky alebo príliš dlhý. Skúste to znova.

## Buttons ("_" marks the key)

button-allow = _Povoliť
button-always = _Vždy povoliť tejto stránke
button-deny = _Odmietnuť
button-sign = _Podpísať
button-cancel = _Zrušiť

## Window titles and notification headings

title-signature-request = Keyport: žiadosť o podpis
title-allow-signing = Keyport: povoliť podpísanie?
title-pin = Keyport: PIN
title-pin-pad = Keyport: zadajte PIN na čítačke
notify-consent-summary = Žiadosť o podpis: { $caller }
notify-pin-pad-summary = Zadajte PIN na čítačke kariet

## The tray menu

tray-version = Keyport { $version }
tray-listening = Počúva na { $url }
tray-ready = Pripravené
tray-paused = Podpisovanie pozastavené: každý podpis sa zamietne
tray-pending = { $count ->
    [one] { $count } žiadosť o podpis čaká na vašu odpoveď
    [few] { $count } žiadosti o podpis čakajú na vašu odpoveď
    [many] { $count } žiadostí o podpis čaká na vašu odpoveď
   *[other] { $count } žiadostí o podpis čaká na vašu odpoveď
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Pozastaviť podpisovanie
tray-sites = Vždy povolené stránky
tray-no-sites = Žiadna stránka nie je vždy povolená
tray-revoke = Odvolať povolenie: { $origin }
tray-tokens = Tokeny
tray-no-token = Nie je vložený žiadny token
tray-token = { $label } ({ $library }, slot { $slot })
tray-token-no-label = (bez názvu)
tray-open-folder = Otvoriť priečinok s nastaveniami a denníkom ({ $folder })
tray-quit = Ukončiť Keyport
