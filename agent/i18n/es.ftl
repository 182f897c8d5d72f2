# Keyport — Spanish (español). Needs review by a native speaker.
# Translated from en.ftl (the rules are there). Formal "usted"; "token" for smart card or USB token.

## Who asks

caller-local = una aplicación local (no es un sitio web)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } le solicita una firma con su certificado.
consent-headline-batch = { $count ->
    [one] { $caller } le solicita { $count } firma con su certificado.
   *[other] { $caller } le solicita { $count } firmas con su certificado.
}
consent-certificate = Certificado: { $subject }
consent-issuer = Emitido por: { $issuer }
consent-algorithm = Algoritmo: { $algorithm }
consent-digest = Resumen: { $fingerprint }
consent-digest-batch = Huella del conjunto: { $fingerprint }
consent-algorithm-name = { $hash } con { $key }
key-unknown = la clave del token
certificate-unreadable = (certificado ilegible)
consent-timeout = Si no responde en { $seconds } s, la solicitud se rechazará.

## The PIN

pin-instruction = Introduzca el PIN del token para firmar.
pin-pad-instruction = Para firmar, introduzca el PIN en el teclado del lector o pulse «Cancelar» en el lector.
pin-label = PIN:
pin-wrong = PIN incorrecto. Inténtelo de nuevo.
pin-wrong-few-tries = PIN incorrecto. Quedan pocos intentos.
pin-wrong-final-try = PIN incorrecto. Queda un intento antes de que el PIN se bloquee.
pin-wrong-length = El PIN es demasiado corto o demasiado largo. Inténtelo de nuevo.

## Buttons ("_" marks the key)

button-allow = _Permitir
button-always = Permitir _siempre a este sitio
button-deny = _Rechazar
button-sign = _Firmar
button-cancel = _Cancelar

## Window titles and notification headings

title-signature-request = Keyport: solicitud de firma
title-allow-signing = Keyport: ¿permitir la firma?
title-pin = Keyport: PIN
title-pin-pad = Keyport: introduzca su PIN en el lector
notify-consent-summary = Solicitud de firma de { $caller }
notify-pin-pad-summary = Introduzca su PIN en el lector de tarjetas

## The tray menu

tray-version = Keyport { $version }
tray-listening = Escuchando en { $url }
tray-ready = Listo
tray-paused = Firma en pausa: se rechaza toda firma
tray-pending = { $count ->
    [one] { $count } solicitud de firma espera su respuesta
   *[other] { $count } solicitudes de firma esperan su respuesta
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Pausar la firma
tray-sites = Sitios siempre permitidos
tray-no-sites = Ningún sitio está siempre permitido
tray-revoke = Dejar de permitir { $origin }
tray-tokens = Tokens
tray-no-token = No hay ningún token insertado
tray-token = { $label } ({ $library }, ranura { $slot })
tray-token-no-label = (sin nombre)
tray-open-folder = Abrir la carpeta de configuración y registro ({ $folder })
tray-quit = Salir de Keyport
