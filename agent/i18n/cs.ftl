# Keyport — Czech (čeština). Needs review by a native speaker.
# Translated from en.ftl (the rules are there). Formal "vy" (vykání); "token" for smart card or
# USB token.

## Who asks

caller-local = místní aplikace (nikoli webová stránka)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } žádá o podpis vaším certifikátem.
consent-headline-batch = { $count ->
    [one] { $caller } žádá o { $count } podpis vaším certifikátem.
    [few] { $caller } žádá o { $count } podpisy vaším certifikátem.
    [many] { $caller } žádá o { $count } podpisů vaším certifikátem.
   *[other] { $caller } žádá o { $count } podpisů vaším certifikátem.
}
consent-certificate = Certifikát: { $subject }
consent-issuer = Vydavatel: { $issuer }
consent-algorithm = Algoritmus: { $algorithm }
consent-digest = Hash: { $fingerprint }
consent-digest-batch = Otisk celé sady: { $fingerprint }
consent-algorithm-name = { $hash } s { $key }
# Instrumental: it follows "s" in consent-algorithm-name.
key-unknown = klíčem tokenu
certificate-unreadable = (nečitelný certifikát)
consent-timeout = Bez odpovědi do { $seconds } s bude žádost zamítnuta.

## The PIN

pin-instruction = Pro podepsání zadejte PIN tokenu.
pin-pad-instruction = Pro podepsání zadejte PIN na klávesnici čtečky nebo na čtečce stiskněte „Zrušit“.
pin-label = PIN:
pin-wrong = Nesprávný PIN. Zkuste to znovu.
pin-wrong-few-tries = Nesprávný PIN. Zbývá jen několik pokusů.
pin-wrong-final-try = Nesprávný PIN. Zbývá jeden pokus, než se PIN zablokuje.
pin-wrong-length = PIN je příliš krátký nebo příliš dlouhý. Zkuste to znovu.

## Buttons ("_" marks the key)

button-allow = _Povolit
button-always = _Vždy povolit tomuto webu
button-deny = _Odmítnout
button-sign = _Podepsat
button-cancel = _Zrušit

## Window titles and notification headings

title-signature-request = Keyport: žádost o podpis
title-allow-signing = Keyport: povolit podepsání?
title-pin = Keyport: PIN
title-pin-pad = Keyport: zadejte PIN na čtečce
notify-consent-summary = Žádost o podpis: { $caller }
notify-pin-pad-summary = Zadejte PIN na čtečce karet

## The tray menu

tray-version = Keyport { $version }
tray-listening = Naslouchá na { $url }
tray-ready = Připraveno
tray-paused = Podepisování pozastaveno: každý podpis je zamítnut
tray-pending = { $count ->
    [one] { $count } žádost o podpis čeká na vaši odpověď
    [few] { $count } žádosti o podpis čekají na vaši odpověď
    [many] { $count } žádostí o podpis čeká na vaši odpověď
   *[other] { $count } žádostí o podpis čeká na vaši odpověď
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Pozastavit podepisování
tray-sites = Vždy povolené weby
tray-no-sites = Žádný web není vždy povolen
tray-revoke = Odvolat povolení: { $origin }
tray-tokens = Tokeny
tray-no-token = Není vložen žádný token
tray-token = { $label } ({ $library }, slot { $slot })
tray-token-no-label = (bez názvu)
tray-open-folder = Otevřít složku s nastavením a protokolem ({ $folder })
tray-quit = Ukončit Keyport
