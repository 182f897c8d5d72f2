# Keyport — French (français). Needs review by a native speaker.
# Translated from en.ftl (the rules are there). Formal "vous"; a no-break space (U+00A0) stands
# before ":", "?" and inside « ».

## Who asks

caller-local = une application locale (pas un site web)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } demande une signature avec votre certificat.
consent-headline-batch = { $count ->
    [one] { $caller } demande { $count } signature avec votre certificat.
   *[other] { $caller } demande { $count } signatures avec votre certificat.
}
consent-certificate = Certificat : { $subject }
consent-issuer = Émis par : { $issuer }
consent-algorithm = Algorithme : { $algorithm }
consent-digest = Condensé : { $fingerprint }
consent-digest-batch = Empreinte de l'ensemble : { $fingerprint }
consent-algorithm-name = { $hash } avec { $key }
key-unknown = la clé du jeton
certificate-unreadable = (certificat illisible)
consent-timeout = Sans réponse sous { $seconds } s, la demande sera refusée.

## The PIN

pin-instruction = Saisissez le code PIN du jeton pour signer.
pin-pad-instruction = Pour signer, saisissez le code PIN sur le clavier du lecteur, ou appuyez sur « Annuler » sur le lecteur.
pin-label = Code PIN :
pin-wrong = PIN incorrect. Veuillez réessayer.
pin-wrong-few-tries = PIN incorrect. Il ne reste que peu d'essais.
pin-wrong-final-try = PIN incorrect. Il reste un seul essai avant le blocage du code PIN.
pin-wrong-length = Le code PIN est trop court ou trop long. Veuillez réessayer.

## Buttons ("_" marks the key)

button-allow = _Autoriser
button-always = _Toujours autoriser ce site
button-deny = _Refuser
button-sign = _Signer
button-cancel = _Annuler

## Window titles and notification headings

title-signature-request = Keyport : demande de signature
title-allow-signing = Keyport : autoriser la signature ?
title-pin = Keyport : code PIN
title-pin-pad = Keyport : saisissez votre code PIN sur le lecteur
notify-consent-summary = Demande de signature : { $caller }
notify-pin-pad-summary = Saisissez votre code PIN sur le lecteur de cartes

## The tray menu

tray-version = Keyport { $version }
tray-listening = À l'écoute sur { $url }
tray-ready = Prêt
tray-paused = Signature suspendue : toute signature est refusée
tray-pending = { $count ->
    [one] { $count } demande de signature attend votre réponse
   *[other] { $count } demandes de signature attendent votre réponse
}
tray-tooltip = Keyport { $version } : { $status }
tray-pause = Suspendre la signature
tray-sites = Sites toujours autorisés
tray-no-sites = Aucun site n'est toujours autorisé
tray-revoke = Ne plus autoriser { $origin }
tray-tokens = Jetons
tray-no-token = Aucun jeton inséré
tray-token = { $label } ({ $library }, emplacement { $slot })
tray-token-no-label = (sans nom)
tray-open-folder = Ouvrir le dossier des paramètres et du journal ({ $folder })
tray-quit = Quitter Keyport
