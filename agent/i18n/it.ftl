# Keyport — Italian (italiano). Needs review by a native speaker.
# Translated from en.ftl (the rules are there). Formal "Lei" with courtesy capitals where the
# reader is addressed, infinitive instructions, short imperatives on buttons and menu items;
# "token" for smart card or USB token.

## Who asks

caller-local = un'applicazione locale (non un sito web)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } Le chiede di firmare con il Suo certificato.
consent-headline-batch = { $count ->
    [one] { $caller } Le chiede { $count } firma con il Suo certificato.
   *[other] { $caller } Le chiede { $count } firme con il Suo certificato.
}
consent-certificate = Certificato: { $subject }
consent-issuer = Emesso da: { $issuer }
consent-algorithm = Algoritmo: { $algorithm }
consent-digest = Hash: { $fingerprint }
consent-digest-batch = Impronta dell'insieme: { $fingerprint }
consent-algorithm-name = { $hash } con { $key }
key-unknown = la chiave del token
certificate-unreadable = (certificato illeggibile)
consent-timeout = Senza risposta entro { $seconds } s, la richiesta sarà rifiutata.

## The PIN

pin-instruction = Inserire il PIN del token per firmare.
pin-pad-instruction = Per firmare, digitare il PIN sul tastierino del lettore oppure premere «Annulla» sul lettore.
pin-label = PIN:
pin-wrong = PIN errato. Riprovare.
pin-wrong-few-tries = PIN errato. Restano pochi tentativi.
pin-wrong-final-try = PIN errato. Resta un solo tentativo prima che il PIN venga bloccato.
pin-wrong-length = Il PIN è troppo corto o troppo lungo. Riprovare.

## Buttons ("_" marks the key)

button-allow = _Consenti
button-always = Consenti _sempre a questo sito
button-deny = _Rifiuta
button-sign = _Firma
button-cancel = _Annulla

## Window titles and notification headings

title-signature-request = Keyport: richiesta di firma
title-allow-signing = Keyport: consentire la firma?
title-pin = Keyport: PIN
title-pin-pad = Keyport: digitare il PIN sul lettore
notify-consent-summary = Richiesta di firma da { $caller }
notify-pin-pad-summary = Digitare il PIN sul lettore di smart card

## The tray menu

tray-version = Keyport { $version }
tray-listening = In ascolto su { $url }
tray-ready = Pronto
tray-paused = Firma sospesa: ogni firma viene rifiutata
tray-pending = { $count ->
    [one] { $count } richiesta di firma in attesa di risposta
   *[other] { $count } richieste di firma in attesa di risposta
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Sospendi la firma
tray-sites = Siti sempre consentiti
tray-no-sites = Nessun sito è sempre consentito
tray-revoke = Revoca il consenso a { $origin }
tray-tokens = Token
tray-no-token = Nessun token inserito
tray-token = { $label } ({ $library }, slot { $slot })
tray-token-no-label = (senza nome)
tray-open-folder = Apri la cartella delle impostazioni e dei log ({ $folder })
tray-quit = Esci da Keyport
