# Keyport — German (Deutsch). Needs review by a native speaker.
# Translated from en.ftl (the rules are there). Formal "Sie"; "Token" (das) for card or USB token.

## Who asks

caller-local = eine lokale Anwendung (keine Website)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } möchte mit Ihrem Zertifikat signieren.
consent-headline-batch = { $count ->
    [one] { $caller } möchte { $count } Signatur mit Ihrem Zertifikat erstellen.
   *[other] { $caller } möchte { $count } Signaturen mit Ihrem Zertifikat erstellen.
}
consent-certificate = Zertifikat: { $subject }
consent-issuer = Ausgestellt von: { $issuer }
consent-algorithm = Algorithmus: { $algorithm }
consent-digest = Hashwert: { $fingerprint }
consent-digest-batch = Fingerabdruck des Stapels: { $fingerprint }
consent-algorithm-name = { $hash } mit { $key }
# Dative: it follows "mit" in consent-algorithm-name.
key-unknown = dem Schlüssel des Tokens
certificate-unreadable = (Zertifikat nicht lesbar)
consent-timeout = Ohne Antwort innerhalb von { $seconds } s gilt die Anfrage als abgelehnt.

## The PIN

pin-instruction = Geben Sie die PIN des Tokens ein, um zu signieren.
pin-pad-instruction = Geben Sie zum Signieren die PIN am Tastenfeld des Lesers ein oder drücken Sie am Leser „Abbrechen“.
pin-label = PIN:
pin-wrong = Falsche PIN. Bitte versuchen Sie es erneut.
pin-wrong-few-tries = Falsche PIN. Es bleiben nur noch wenige Versuche.
pin-wrong-final-try = Falsche PIN. Sie haben noch einen Versuch, bevor die PIN gesperrt wird.
pin-wrong-length = Die PIN ist zu kurz oder zu lang. Bitte versuchen Sie es erneut.

## Buttons ("_" marks the key)

button-allow = _Zulassen
button-always = Diese Website _immer zulassen
button-deny = _Ablehnen
button-sign = _Signieren
button-cancel = _Abbrechen

## Window titles and notification headings

title-signature-request = Keyport: Signaturanfrage
title-allow-signing = Keyport: Signieren zulassen?
title-pin = Keyport: PIN
title-pin-pad = Keyport: Geben Sie Ihre PIN am Leser ein
notify-consent-summary = Signaturanfrage: { $caller }
notify-pin-pad-summary = Geben Sie Ihre PIN am Kartenleser ein

## The tray menu

tray-version = Keyport { $version }
tray-listening = Empfangsbereit unter { $url }
tray-ready = Bereit
tray-paused = Signieren pausiert: Jede Signatur wird abgelehnt
tray-pending = { $count ->
    [one] { $count } Signaturanfrage wartet auf Ihre Antwort
   *[other] { $count } Signaturanfragen warten auf Ihre Antwort
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Signieren pausieren
tray-sites = Immer zugelassene Websites
tray-no-sites = Keine Website ist immer zugelassen
tray-revoke = Zulassung für { $origin } widerrufen
tray-tokens = Tokens
tray-no-token = Kein Token eingesteckt
tray-token = { $label } ({ $library }, Slot { $slot })
tray-token-no-label = (ohne Bezeichnung)
tray-open-folder = Ordner für Einstellungen und Protokoll öffnen ({ $folder })
tray-quit = Keyport beenden
