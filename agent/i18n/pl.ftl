# Keyport — Polish (polski). Needs review by a native speaker.
# Translated from en.ftl (the rules are there). No "Pan/Pani": the short imperative usual in Polish
# software and banking apps, with the courtesy capital in "Twój"; "token" for smart card or USB
# token.

## Who asks

caller-local = aplikacja lokalna (nie witryna internetowa)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } prosi o złożenie podpisu Twoim certyfikatem.
consent-headline-batch = { $count ->
    [one] { $caller } prosi o { $count } podpis Twoim certyfikatem.
    [few] { $caller } prosi o { $count } podpisy Twoim certyfikatem.
    [many] { $caller } prosi o { $count } podpisów Twoim certyfikatem.
   *[other] { $caller } prosi o { $count } podpisu Twoim certyfikatem.
}
consent-certificate = Certyfikat: { $subject }
consent-issuer = Wystawca: { $issuer }
consent-algorithm = Algorytm: { $algorithm }
consent-digest = Skrót: { $fingerprint }
consent-digest-batch = Odcisk całego zestawu: { $fingerprint }
consent-algorithm-name = { $hash } z { $key }
# Instrumental: it follows "z" in consent-algorithm-name.
key-unknown = kluczem tokena
certificate-unreadable = (nieczytelny certyfikat)
consent-timeout = Brak odpowiedzi w ciągu { $seconds } s oznacza odmowę.

## The PIN

pin-instruction = Aby podpisać, wpisz PIN tokena.
pin-pad-instruction = Aby podpisać, wpisz PIN na klawiaturze czytnika lub naciśnij „Anuluj” na czytniku.
pin-label = PIN:
pin-wrong = Nieprawidłowy PIN. Spróbuj ponownie.
pin-wrong-few-tries = Nieprawidłowy PIN. Pozostało niewiele prób.
pin-wrong-final-try = Nieprawidłowy PIN. Pozostała jedna próba, zanim PIN zostanie zablokowany.
pin-wrong-length = PIN jest za krótki lub za długi. Spróbuj ponownie.

## Buttons ("_" marks the key)

button-allow = _Zezwól
button-always = Zawsze zezwalaj tej _witrynie
button-deny = _Odmów
button-sign = _Podpisz
button-cancel = _Anuluj

## Window titles and notification headings

title-signature-request = Keyport: żądanie podpisu
title-allow-signing = Keyport: zezwolić na podpisanie?
title-pin = Keyport: PIN
title-pin-pad = Keyport: wpisz PIN na czytniku
notify-consent-summary = Żądanie podpisu: { $caller }
notify-pin-pad-summary = Wpisz PIN na czytniku kart

## The tray menu

tray-version = Keyport { $version }
tray-listening = Nasłuchuje pod adresem { $url }
tray-ready = Gotowy
tray-paused = Podpisywanie wstrzymane: każdy podpis jest odrzucany
tray-pending = { $count ->
    [one] { $count } żądanie podpisu czeka na odpowiedź
    [few] { $count } żądania podpisu czekają na odpowiedź
    [many] { $count } żądań podpisu czeka na odpowiedź
   *[other] { $count } żądania podpisu czeka na odpowiedź
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Wstrzymaj podpisywanie
tray-sites = Witryny zawsze dozwolone
tray-no-sites = Żadna witryna nie jest zawsze dozwolona
tray-revoke = Cofnij zgodę: { $origin }
tray-tokens = Tokeny
tray-no-token = Nie włożono żadnego tokena
tray-token = { $label } ({ $library }, gniazdo { $slot })
tray-token-no-label = (bez nazwy)
tray-open-folder = Otwórz folder ustawień i dziennika ({ $folder })
tray-quit = Zakończ Keyport
