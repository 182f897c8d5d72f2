# Keyport — Russian (русский). Needs review by a native speaker.
# Translated from en.ftl (the rules are there). Formal "вы"; "токен" for smart card or USB token;
# button keys are Cyrillic letters (no Latin letter in the words).

## Who asks

caller-local = локальное приложение (не веб-сайт)

## What every prompt says about a signature (notification, dialogs, pinentry)

consent-headline = { $caller } запрашивает подпись с помощью вашего сертификата.
consent-headline-batch = { $count ->
    [one] { $caller } запрашивает { $count } подпись с помощью вашего сертификата.
    [few] { $caller } запрашивает { $count } подписи с помощью вашего сертификата.
    [many] { $caller } запрашивает { $count } подписей с помощью вашего сертификата.
   *[other] { $caller } запрашивает { $count } подписи с помощью вашего сертификата.
}
consent-certificate = Сертификат: { $subject }
consent-issuer = Кем выдан: { $issuer }
consent-algorithm = Алгоритм: { $algorithm }
consent-digest = Хеш: { $fingerprint }
consent-digest-batch = Отпечаток всего набора: { $fingerprint }
consent-algorithm-name = { $hash } с { $key }
# Instrumental: it follows "с" in consent-algorithm-name.
key-unknown = ключом токена
certificate-unreadable = (нечитаемый сертификат)
consent-timeout = Без ответа в течение { $seconds } с запрос будет отклонён.

## The PIN

pin-instruction = Для подписи введите PIN-код токена.
pin-pad-instruction = Для подписи введите PIN-код на клавиатуре считывателя или нажмите «Отмена» на считывателе.
pin-label = PIN-код:
pin-wrong = Неверный PIN-код. Попробуйте ещё раз.
pin-wrong-few-tries = Неверный PIN-код. Осталось мало попыток.
pin-wrong-final-try = Неверный PIN-код. Осталась одна попытка до блокировки PIN-кода.
pin-wrong-length = PIN-код слишком короткий или слишком длинный. Попробуйте ещё раз.

## Buttons ("_" marks the key)

button-allow = _Разрешить
button-always = _Всегда разрешать этому сайту
button-deny = _Отклонить
button-sign = _Подписать
button-cancel = _Отмена

## Window titles and notification headings

title-signature-request = Keyport: запрос подписи
title-allow-signing = Keyport: разрешить подпись?
title-pin = Keyport: PIN-код
title-pin-pad = Keyport: введите PIN-код на считывателе
notify-consent-summary = Запрос подписи: { $caller }
notify-pin-pad-summary = Введите PIN-код на считывателе карт

## The tray menu

tray-version = Keyport { $version }
tray-listening = Ожидает подключений на { $url }
tray-ready = Готов
tray-paused = Подписание приостановлено: все подписи отклоняются
tray-pending = { $count ->
    [one] { $count } запрос подписи ожидает вашего ответа
    [few] { $count } запроса подписи ожидают вашего ответа
    [many] { $count } запросов подписи ожидают вашего ответа
   *[other] { $count } запроса подписи ожидают вашего ответа
}
tray-tooltip = Keyport { $version }: { $status }
tray-pause = Приостановить подписание
tray-sites = Всегда разрешённые сайты
tray-no-sites = Нет сайтов, которым разрешено всегда
tray-revoke = Отозвать разрешение для { $origin }
tray-tokens = Токены
tray-no-token = Токен не подключён
tray-token = { $label } ({ $library }, слот { $slot })
tray-token-no-label = (без названия)
tray-open-folder = Открыть папку настроек и журнала ({ $folder })
tray-quit = Выйти из Keyport
