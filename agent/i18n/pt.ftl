# Keyport — Portuguese (português; European, kept neutral for Brazil where possible).
# Needs review by a native speaker.
# Translated from en.ftl (the rules are there). Formal third person ("o seu", "Insira"); "token"
# for smart card or USB token.

## Who asks

caller-local = um programa local (não é um site)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } pede uma assinatura com o seu certificado.
consent-headline-batch = { $count ->
    [one] { $caller } pede { $count } assinatura com o seu certificado.
   *[other] { $caller } pede { $count } assinaturas com o seu certificado.
}
consent-certificate = Certificado: { $subject }
consent-issuer = Emitido por: { $issuer }
consent-algorithm = Algoritmo: { $algorithm }
consent-digest = Resumo: { $fingerprint }
consent-digest-batch = Impressão digital do conjunto: { $fingerprint }
consent-algorithm-name = { $hash } com { $key }
key-unknown = a chave do token
certificate-unreadable = (certificado ilegível)
consent-timeout = Sem resposta em { $seconds } s, o pedido será recusado.

## The PIN

pin-instruction = Insira o PIN do token para assinar.
pin-pad-instruction = Para assinar, insira o PIN no teclado do leitor ou pressione “Cancelar” no leitor.
pin-label = PIN:
pin-wrong = PIN incorreto. Tente novamente.
pin-wrong-few-tries = PIN incorreto. Restam poucas tentativas.
pin-wrong-final-try = PIN incorreto. Resta uma tentativa antes que o PIN seja bloqueado.
pin-wrong-length = O PIN é muito curto ou muito longo. Tente novamente.

## Buttons ("_" marks the key)

button-allow = _Permitir
button-always = Permitir _sempre este site
button-deny = _Recusar
button-sign = _Assinar
button-cancel = _Cancelar

## Window titles and notification headings

title-signature-request = Keyport: pedido de assinatura
title-allow-signing = Keyport: permitir a assinatura?
title-pin = Keyport: PIN
title-pin-pad = Keyport: insira o seu PIN no leitor
notify-consent-summary = Pedido de assinatura de { $caller }
notify-pin-pad-summary = Insira o seu PIN no leitor de cartões

## The tray menu

tray-version = Keyport { $version }
tray-listening = À escuta em { $url }
tray-ready = Pronto
tray-paused = Assinatura em pausa: todas as assinaturas são recusadas
tray-pending = { $count ->
    [one] { $count } pedido de assinatura aguarda a sua resposta
   *[other] { $count } pedidos de assinatura aguardam a sua resposta
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Pausar a assinatura
tray-sites = Sites sempre permitidos
tray-no-sites = Nenhum site é sempre permitido
tray-revoke = Deixar de permitir { $origin }
tray-tokens = Tokens
tray-no-token = Nenhum token inserido
tray-token = { $label } ({ $library }, slot { $slot })
tray-token-no-label = (sem nome)
tray-open-folder = Abrir a pasta de configurações e registos ({ $folder })
tray-quit = Sair do Keyport
