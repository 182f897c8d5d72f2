# Keyport — Dutch (Nederlands). Needs review by a native speaker.
# Translated from en.ftl (the rules are there). Formal "u"; "PIN-code" as in the Belgian eID software.

## Who asks

caller-local = een lokale toepassing (geen website)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } vraagt om te ondertekenen met uw certificaat.
consent-headline-batch = { $count ->
    [one] { $caller } vraagt om { $count } handtekening met uw certificaat.
   *[other] { $caller } vraagt om { $count } handtekeningen met uw certificaat.
}
consent-certificate = Certificaat: { $subject }
consent-issuer = Uitgegeven door: { $issuer }
consent-algorithm = Algoritme: { $algorithm }
consent-digest = Hashwaarde: { $fingerprint }
consent-digest-batch = Vingerafdruk van het geheel: { $fingerprint }
consent-algorithm-name = { $hash } met { $key }
key-unknown = de sleutel van het token
certificate-unreadable = (onleesbaar certificaat)
consent-timeout = Zonder antwoord binnen { $seconds } s wordt het verzoek geweigerd.

## The PIN

pin-instruction = Voer de PIN-code van het token in om te ondertekenen.
pin-pad-instruction = Voer de PIN-code in op het toetsenbord van de lezer om te ondertekenen, of druk op de lezer op ‘Annuleren’.
pin-label = PIN-code:
pin-wrong = Onjuiste PIN-code. Probeer het opnieuw.
pin-wrong-few-tries = Onjuiste PIN-code. Er zijn nog maar weinig pogingen over.
pin-wrong-final-try = Onjuiste PIN-code. U hebt nog één poging voordat de PIN-code wordt geblokkeerd.
pin-wrong-length = De PIN-code is te kort of te lang. Probeer het opnieuw.

## Buttons ("_" marks the key)

button-allow = _Toestaan
button-always = Deze site _altijd toestaan
button-deny = _Weigeren
button-sign = _Ondertekenen
button-cancel = _Annuleren

## Window titles and notification headings

title-signature-request = Keyport: verzoek om handtekening
title-allow-signing = Keyport: ondertekenen toestaan?
title-pin = Keyport: PIN-code
title-pin-pad = Keyport: voer uw PIN-code in op de lezer
notify-consent-summary = Verzoek om handtekening van { $caller }
notify-pin-pad-summary = Voer uw PIN-code in op de kaartlezer

## The tray menu

tray-version = Keyport { $version }
tray-listening = Luistert op { $url }
tray-ready = Gereed
tray-paused = Ondertekenen gepauzeerd: elke handtekening wordt geweigerd
tray-pending = { $count ->
    [one] { $count } verzoek om handtekening wacht op uw antwoord
   *[other] { $count } verzoeken om handtekening wachten op uw antwoord
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Ondertekenen pauzeren
tray-sites = Altijd toegestane sites
tray-no-sites = Geen enkele site is altijd toegestaan
tray-revoke = Toestemming intrekken voor { $origin }
tray-tokens = Tokens
tray-no-token = Geen token aangesloten
tray-token = { $label } ({ $library }, slot { $slot })
tray-token-no-label = (geen naam)
tray-open-folder = Map met instellingen en logboek openen ({ $folder })
tray-quit = Keyport afsluiten
