# Keyport — Latvian (latviešu). Needs review by a native speaker: among the least sure catalogues.
# Translated from en.ftl (the rules are there). Formal "jūs"; "drošības ierīce" = smart card or
# USB token.

## Who asks

caller-local = lokāla lietotne (nav tīmekļa vietne)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } lūdz parakstīt ar jūsu sertifikātu.
consent-headline-batch = { $count ->
    [zero] { $caller } lūdz { $count } parakstus ar jūsu sertifikātu.
    [one] { $caller } lūdz { $count } parakstu ar jūsu sertifikātu.
   *[other] { $caller } lūdz { $count } parakstus ar jūsu sertifikātu.
}
consent-certificate = Sertifikāts: { $subject }
consent-issuer = Izdevējs: { $issuer }
consent-algorithm = Algoritms: { $algorithm }
consent-digest = Jaucējvērtība: { $fingerprint }
consent-digest-batch = Visas kopas nospiedums: { $fingerprint }
consent-algorithm-name = { $hash } ar { $key }
# Accusative: it follows "ar" in consent-algorithm-name.
key-unknown = drošības ierīces atslēgu
certificate-unreadable = (nelasāms sertifikāts)
consent-timeout = Ja atbilde netiek sniegta { $seconds } s laikā, pieprasījums tiek noraidīts.

## The PIN

pin-instruction = Lai parakstītu, ievadiet drošības ierīces PIN kodu.
pin-pad-instruction = Lai parakstītu, ievadiet PIN kodu lasītāja tastatūrā vai nospiediet lasītājā „Atcelt”.
pin-label = PIN kods:
pin-wrong = Nepareizs PIN kods. Mēģiniet vēlreiz.
pin-wrong-few-tries = Nepareizs PIN kods. Atlikuši tikai daži mēģinājumi.
pin-wrong-final-try = Nepareizs PIN kods. Atlicis viens mēģinājums, pirms PIN kods tiks bloķēts.
pin-wrong-length = PIN kods ir par īsu vai par garu. Mēģiniet vēlreiz.

## Buttons ("_" marks the key)

button-allow = _Atļaut
button-always = _Vienmēr atļaut šai vietnei
button-deny = _Noraidīt
button-sign = _Parakstīt
button-cancel = _Atcelt

## Window titles and notification headings

title-signature-request = Keyport: paraksta pieprasījums
title-allow-signing = Keyport: atļaut parakstīšanu?
title-pin = Keyport: PIN kods
title-pin-pad = Keyport: ievadiet PIN kodu lasītājā
notify-consent-summary = Paraksta pieprasījums: { $caller }
notify-pin-pad-summary = Ievadiet PIN kodu karšu lasītājā

## The tray menu

tray-version = Keyport { $version }
tray-listening = Klausās adresē { $url }
tray-ready = Gatavs
tray-paused = Parakstīšana apturēta: visi paraksti tiek noraidīti
tray-pending = { $count ->
    [zero] { $count } paraksta pieprasījumi gaida jūsu atbildi
    [one] { $count } paraksta pieprasījums gaida jūsu atbildi
   *[other] { $count } paraksta pieprasījumi gaida jūsu atbildi
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Apturēt parakstīšanu
tray-sites = Vienmēr atļautās vietnes
tray-no-sites = Nav nevienas vienmēr atļautas vietnes
tray-revoke = Atsaukt atļauju: { $origin }
tray-tokens = Drošības ierīces
tray-no-token = Nav pievienota neviena drošības ierīce
tray-token = { $label } ({ $library }, slots { $slot })
tray-token-no-label = (bez nosaukuma)
tray-open-folder = Atvērt iestatījumu un žurnāla mapi ({ $folder })
tray-quit = Aizvērt Keyport
