# Keyport's words for the person at the keyboard, in English: the source every other catalogue
# translates (agent/i18n/GLOSSARY.md has the terms; agent/i18n/README.md how to add a language).
#
# Rules every catalogue keeps (tests check them):
# - exactly the messages of this file, each with every placeable ({ $name }) English uses;
# - the certificate's subject and issuer stand at the end of their line, after a label;
# - in button labels, "_" marks the key that presses the button (Alt+key on Windows, the key
#   alone in a terminal); the three consent buttons need three different keys, as do the two
#   PIN buttons.

## Who asks

# A program on this computer that sent no web origin (instead of a site's address).
caller-local = a local application (no web origin)

## What every prompt says about a signature (notification, dialogs, pinentry)

# $caller: the site's address, e.g. https://shop.example (or caller-local).
consent-headline = { $caller } asks to sign with your certificate.
# A batch: one answer for many signatures. $count is 2 or more.
consent-headline-batch = { $count ->
    [one] { $caller } asks for { $count } signature with your certificate.
   *[other] { $caller } asks for { $count } signatures with your certificate.
}
# $subject: who the certificate names (text from the certificate, e.g. CN=Alice).
consent-certificate = Certificate: { $subject }
# $issuer: who issued the certificate (text from the certificate).
consent-issuer = Issued by: { $issuer }
# $algorithm: e.g. "SHA-256 with RSA" (consent-algorithm-name).
consent-algorithm = Algorithm: { $algorithm }
# $fingerprint: the first bytes of what is signed, in hex, e.g. 3A7F09C2 11B0E4D5.
consent-digest = Digest: { $fingerprint }
# For a batch: a fingerprint of all the documents together.
consent-digest-batch = Fingerprint of the set: { $fingerprint }
# $hash: SHA-256, SHA-384, …; $key: RSA, ECDSA, RSA-PSS (or key-unknown).
consent-algorithm-name = { $hash } with { $key }
key-unknown = the token's key
certificate-unreadable = (unreadable certificate)
# $seconds: the time left to answer.
consent-timeout = No answer within { $seconds } s is a refusal.

## The PIN

pin-instruction = Enter the token's PIN to sign.
pin-pad-instruction = Type the PIN on the reader's keypad to sign, or press Cancel on the reader.
pin-label = PIN:
pin-wrong = Wrong PIN. Try again.
pin-wrong-few-tries = Wrong PIN. Few tries are left.
pin-wrong-final-try = Wrong PIN. One try is left before the PIN locks.
pin-wrong-length = The PIN is too short or too long. Try again.

## Buttons ("_" marks the key)

button-allow = _Allow
button-always = Al_ways allow this site
button-deny = _Deny
button-sign = _Sign
button-cancel = _Cancel

## Window titles and notification headings

# The consent and PIN windows drawn by pinentry (Linux).
title-signature-request = Keyport: signature request
# The Windows consent dialog.
title-allow-signing = Keyport: allow signing?
# The Windows PIN dialog.
title-pin = Keyport: PIN
# The Windows notice while a PIN-pad reader waits.
title-pin-pad = Keyport: type your PIN on the reader
# The consent notification's heading.
notify-consent-summary = Signature request from { $caller }
# The notification while a PIN-pad reader waits.
notify-pin-pad-summary = Type your PIN on the card reader

## The tray menu

tray-version = Keyport { $version }
# $url: where the agent listens, e.g. ws://127.0.0.1:10443
tray-listening = Listening on { $url }
tray-ready = Ready
tray-paused = Signing paused: every signature is refused
tray-pending = { $count ->
    [one] { $count } signature request waits for your answer
   *[other] { $count } signature requests wait for your answer
}
# The tray icon's tooltip. $status: tray-ready, tray-paused or tray-pending.
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Pause signing
tray-sites = Always-allowed sites
tray-no-sites = No site is always allowed
# Forget an "always allow" answer. $origin: the site's address.
tray-revoke = Revoke { $origin }
tray-tokens = Tokens
tray-no-token = No token inserted
# $label: the token's name; $library: the PKCS #11 library's file; $slot: a number.
tray-token = { $label } ({ $library }, slot { $slot })
tray-token-no-label = (no label)
# $folder: a folder's path.
tray-open-folder = Open settings and log folder ({ $folder })
tray-quit = Quit Keyport
