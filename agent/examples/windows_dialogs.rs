//! Show one of Keyport's Windows dialogs, as the agent would, and print the answer: for trying
//! them by hand and for driving them from outside (xdotool under Wine + Xvfb).
//!
//! ```text
//! cargo run --target x86_64-pc-windows-gnu -p keyport --example windows_dialogs -- consent [SECS]
//! ... -- consent-local [SECS]     (a local caller: no "Always allow this site")
//! ... -- pin [SECS] [EXPECTED]    (prints whether the PIN typed was EXPECTED, never the PIN)
//! ... -- pin-retry [SECS] [EXPECTED]
//! ... -- notice [SECS]            (the PIN-pad notice, shown for SECS, then taken back)
//! ```

#[cfg(windows)]
fn main() {
    use keyport::consent::{Caller, ConsentRequest, ConsentUi, PinAnswer, PinUi};
    use keyport::desktop::windows::WindowsDialogs;
    use keyport::origin::Origin;
    use std::time::Duration;

    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("consent");
    let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let timeout = Duration::from_secs(secs);
    let caller = match what {
        "consent-local" => Caller::Local { trusted: false },
        _ => Caller::Origin(Origin::parse("https://shop.example").expect("an origin")),
    };
    let request = ConsentRequest {
        caller,
        subject: "CN=Alice Example, O=Example & Co, C=BE".into(),
        issuer: "CN=Example Issuing CA 2, O=Example Trust Services, C=BE".into(),
        algorithm: "SHA-256 with RSA".into(),
        digest_fingerprint: "D8864644 C15D33BE".into(),
        count: 1,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dialogs = WindowsDialogs::new();
    match what {
        "consent" | "consent-local" => {
            let answer = rt.block_on(dialogs.ask(&request, timeout));
            println!("answer: {answer:?}");
        }
        "pin" | "pin-retry" => {
            let error = (what == "pin-retry").then_some("Wrong PIN. Few tries are left.");
            let answer = rt.block_on(dialogs.ask_pin(&request, error, timeout));
            match answer {
                Ok(PinAnswer::Pin(pin)) => match args.get(2) {
                    Some(expected) => {
                        println!("answer: a PIN, as expected: {}", pin.expose() == expected)
                    }
                    None => println!(
                        "answer: a PIN of {} characters",
                        pin.expose().chars().count()
                    ),
                },
                Ok(PinAnswer::Cancelled) => println!("answer: cancelled"),
                Ok(PinAnswer::TimedOut) => println!("answer: no answer in time"),
                Err(why) => println!("answer: cannot ask ({why})"),
            }
        }
        "notice" => {
            let guard = rt.block_on(dialogs.pin_pad_notice(&request));
            println!("notice shown: {}", guard.is_some());
            std::thread::sleep(timeout);
            drop(guard);
            // Let the window go before the process does.
            std::thread::sleep(Duration::from_secs(3));
            println!("notice taken back");
        }
        other => {
            eprintln!("unknown dialog {other:?}: consent, consent-local, pin, pin-retry, notice");
            std::process::exit(2);
        }
    }
}

#[cfg(not(windows))]
fn main() {
    eprintln!("the Windows dialogs exist only on Windows (try --target x86_64-pc-windows-gnu)");
    std::process::exit(2);
}
