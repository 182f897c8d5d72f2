# Keyport — Estonian (eesti). Needs review by a native speaker: among the least sure catalogues.
# Translated from en.ftl (the rules are there). Polite plural "teie" in sentences; buttons and menu
# items in the short imperative usual in Estonian software. "Turvaseade" = smart card or USB token.

## Who asks

caller-local = kohalik rakendus (mitte veebisait)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } palub allkirjastada teie sertifikaadiga.
consent-headline-batch = { $count ->
    [one] { $caller } palub teie sertifikaadiga allkirja ({ $count } allkiri).
   *[other] { $caller } palub teie sertifikaadiga allkirju ({ $count } allkirja).
}
consent-certificate = Sertifikaat: { $subject }
consent-issuer = Väljaandja: { $issuer }
consent-algorithm = Algoritm: { $algorithm }
consent-digest = Räsi: { $fingerprint }
consent-digest-batch = Kogumi sõrmejälg: { $fingerprint }
consent-algorithm-name = { $hash } ja { $key }
key-unknown = turvaseadme võti
certificate-unreadable = (loetamatu sertifikaat)
consent-timeout = Kui { $seconds } s jooksul ei vastata, loetakse see keeldumiseks.

## The PIN

pin-instruction = Allkirjastamiseks sisestage turvaseadme PIN-kood.
pin-pad-instruction = Allkirjastamiseks sisestage PIN-kood kaardilugeja klahvistikul või vajutage kaardilugejal „Tühista“.
pin-label = PIN-kood:
pin-wrong = Vale PIN-kood. Proovige uuesti.
pin-wrong-few-tries = Vale PIN-kood. Alles on vaid mõni katse.
pin-wrong-final-try = Vale PIN-kood. Enne PIN-koodi lukustumist on jäänud üks katse.
pin-wrong-length = PIN-kood on liiga lühike või liiga pikk. Proovige uuesti.

## Buttons ("_" marks the key)

button-allow = _Luba
button-always = Luba sellele veebisaidile _alati
button-deny = _Keeldu
button-sign = _Allkirjasta
button-cancel = _Tühista

## Window titles and notification headings

title-signature-request = Keyport: allkirjastamise taotlus
title-allow-signing = Keyport: kas lubate allkirjastada?
title-pin = Keyport: PIN-kood
title-pin-pad = Keyport: sisestage PIN-kood kaardilugejal
notify-consent-summary = Allkirjastamise taotlus: { $caller }
notify-pin-pad-summary = Sisestage PIN-kood kaardilugejal

## The tray menu

tray-version = Keyport { $version }
tray-listening = Kuulab aadressil { $url }
tray-ready = Valmis
tray-paused = Allkirjastamine on peatatud: iga allkiri lükatakse tagasi
tray-pending = { $count ->
    [one] { $count } allkirjastamise taotlus ootab teie vastust
   *[other] { $count } allkirjastamise taotlust ootavad teie vastust
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Peata allkirjastamine
tray-sites = Alati lubatud veebisaidid
tray-no-sites = Ükski veebisait pole alati lubatud
tray-revoke = Tühista luba: { $origin }
tray-tokens = Turvaseadmed
tray-no-token = Turvaseadet pole ühendatud
tray-token = { $label } ({ $library }, pesa { $slot })
tray-token-no-label = (nimeta)
tray-open-folder = Ava sätete ja logi kaust ({ $folder })
tray-quit = Sulge Keyport
