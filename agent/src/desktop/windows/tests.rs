//! The dialogs for real (Windows, or Wine under Xvfb): the agent asks through
//! [`WindowsDialogs`] while a "person" on another thread finds the window by its title, reads
//! its controls back and answers with a click (`BM_CLICK`) or the keyboard messages a key press
//! makes (posted to the dialog's queue, so they go through its message loop and
//! `IsDialogMessageW` as typed keys do).

use super::spec::*;
use super::spec::{IDCANCEL, IDOK};
use super::WindowsDialogs;
use crate::consent::{ConsentRequest, ConsentUi, Decision, PinAnswer, PinUi};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use windows_sys::Win32::Foundation::HWND;
use windows_sys::Win32::UI::Input::KeyboardAndMouse::{VK_ESCAPE, VK_RETURN};
use windows_sys::Win32::UI::WindowsAndMessaging::*;

/// One dialog at a time: the person finds it by its title.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A window, as a number (it crosses threads).
#[derive(Clone, Copy, Debug)]
struct Win(isize);

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

impl Win {
    fn hwnd(self) -> HWND {
        self.0 as HWND
    }

    /// The dialog titled `title`, once it shows (panics after 20 s). A window is found while
    /// its controls are still being made; it shows when they are all there.
    fn find(title: &str) -> Win {
        let (class, title) = (wide("KeyportDialog"), wide(title));
        let start = Instant::now();
        loop {
            // SAFETY: NUL-terminated strings; any handle may be asked.
            let hwnd = unsafe { FindWindowW(class.as_ptr(), title.as_ptr()) };
            if !hwnd.is_null() && unsafe { IsWindowVisible(hwnd) } != 0 {
                return Win(hwnd as isize);
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no dialog");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until no window is titled `title` (panics after 20 s). The answer comes first, the
    /// window goes after it: under Wine without a window manager that can take seconds.
    fn gone(title: &str) {
        let start = Instant::now();
        while Win::exists(title) {
            assert!(start.elapsed() < Duration::from_secs(20), "still shown");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether a window titled `title` is there now.
    fn exists(title: &str) -> bool {
        let (class, title) = (wide("KeyportDialog"), wide(title));
        // SAFETY: NUL-terminated strings.
        !unsafe { FindWindowW(class.as_ptr(), title.as_ptr()) }.is_null()
    }

    fn item(self, id: u16) -> Win {
        // SAFETY: any handle may be asked; null if there is no such control.
        Win(unsafe { GetDlgItem(self.hwnd(), id as i32) } as isize)
    }

    fn text(self) -> String {
        let mut buf = [0u16; 1024];
        // SAFETY: the buffer's length is given.
        let n = unsafe {
            SendMessageW(
                self.hwnd(),
                WM_GETTEXT,
                buf.len(),
                buf.as_mut_ptr() as isize,
            )
        };
        String::from_utf16_lossy(&buf[..n as usize])
    }

    fn style(self) -> u32 {
        // SAFETY: reading a window's style.
        unsafe { GetWindowLongW(self.hwnd(), GWL_STYLE) as u32 }
    }

    fn enabled(self) -> bool {
        self.style() & WS_DISABLED == 0
    }

    fn click(self) {
        // SAFETY: a message to a button; the dialog's thread handles it.
        unsafe { SendMessageW(self.hwnd(), BM_CLICK, 0, 0) };
    }

    /// Queue `msg` for the window, as the keyboard would.
    fn post(self, msg: u32, wparam: usize, lparam: isize) {
        // SAFETY: posting a message.
        unsafe { PostMessageW(self.hwnd(), msg, wparam, lparam) };
    }

    fn key(self, vk: u16) {
        self.post(WM_KEYDOWN, vk as usize, 1);
        self.post(WM_KEYUP, vk as usize, 1 | (3 << 30));
    }

    /// Alt+`c`: what a mnemonic listens to.
    fn alt(self, c: char) {
        self.post(WM_SYSCHAR, c as usize, 1 | (1 << 29));
    }

    fn type_text(self, s: &str) {
        for c in s.encode_utf16() {
            self.post(WM_CHAR, c as usize, 1);
        }
    }

    /// Wait until the control's text is `text` (posted keys are handled after sent messages:
    /// a click sent at once would overtake them).
    fn wait_for_text(self, text: &str) {
        let start = Instant::now();
        while self.text() != text {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Past the input guard, with room to spare on a loaded machine.
fn after_the_guard() {
    std::thread::sleep(INPUT_GUARD + Duration::from_millis(400));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Ask for consent to `request` while `person` answers the dialog.
fn consent(
    request: ConsentRequest,
    timeout: Duration,
    person: impl FnOnce(Win) + Send + 'static,
) -> Result<Option<Decision>, String> {
    consent_timed(request, timeout, person).0
}

/// [`consent`], and how long the answer took.
fn consent_timed(
    request: ConsentRequest,
    timeout: Duration,
    person: impl FnOnce(Win) + Send + 'static,
) -> (Result<Option<Decision>, String>, Duration) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let person = std::thread::spawn(move || person(Win::find(&consent_title())));
    let start = Instant::now();
    let answer = runtime().block_on(WindowsDialogs::new().ask(&request, timeout));
    let took = start.elapsed();
    person.join().unwrap();
    Win::gone(&consent_title());
    (answer, took)
}

/// Ask for the PIN while `person` answers the dialog.
fn pin(
    error: Option<&str>,
    timeout: Duration,
    person: impl FnOnce(Win) + Send + 'static,
) -> Result<PinAnswer, String> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let request = ConsentRequest::sample("https://a.example", "CN=Alice");
    let person = std::thread::spawn(move || person(Win::find(&pin_title())));
    let answer = runtime().block_on(WindowsDialogs::new().ask_pin(&request, error, timeout));
    person.join().unwrap();
    Win::gone(&pin_title());
    answer
}

fn site() -> ConsentRequest {
    ConsentRequest::sample("https://a.example", "CN=Alice & Bob")
}

const LONG: Duration = Duration::from_secs(60);

#[test]
fn the_consent_dialog_shows_the_request_and_allow_waits_for_the_guard() {
    let answer = consent(site(), LONG, |w| {
        assert_eq!(
            w.item(ID_HEADLINE).text(),
            "https://a.example asks to sign with your certificate."
        );
        // `&` drawn as it is: the statics have no mnemonics.
        assert_eq!(w.item(ID_CERTIFICATE).text(), "Certificate: CN=Alice & Bob");
        assert_ne!(w.item(ID_CERTIFICATE).style() & SS_NOPREFIX_STYLE, 0);
        assert_eq!(w.item(ID_ISSUER).text(), "Issued by: CN=Demo CA");
        assert_eq!(w.item(ID_ALGORITHM).text(), "Algorithm: SHA-256 with RSA");
        assert_eq!(w.item(ID_FINGERPRINT).text(), "Digest: ABABABAB ABABABAB");
        assert!(w.item(ID_COUNTDOWN).text().starts_with("No answer within "));
        assert_eq!(w.item(ID_ALLOW).text(), "&Allow");
        assert_eq!(w.item(ID_ALWAYS).text(), "Al&ways allow this site");
        assert_eq!(w.item(ID_DENY).text(), "&Deny");
        // The yes buttons start disabled, and a click that comes anyway is not an answer.
        assert!(!w.item(ID_ALLOW).enabled() && !w.item(ID_ALWAYS).enabled());
        assert!(w.item(ID_DENY).enabled());
        w.item(ID_ALLOW).click();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            Win::exists(&consent_title()),
            "a click in the guard answered"
        );
        after_the_guard();
        assert!(w.item(ID_ALLOW).enabled());
        w.item(ID_ALLOW).click();
    });
    assert_eq!(answer, Ok(Some(Decision::Allow)));
}

#[test]
fn always_allow_is_a_button_for_a_site_only() {
    let answer = consent(site(), LONG, |w| {
        after_the_guard();
        w.item(ID_ALWAYS).click();
    });
    assert_eq!(answer, Ok(Some(Decision::AllowAlways)));

    let local = ConsentRequest::sample("a local program", "CN=Alice");
    let answer = consent(local, LONG, |w| {
        assert!(w.item(ID_ALWAYS).0 == 0, "no Always for a local caller");
        after_the_guard();
        w.item(ID_ALLOW).click();
    });
    assert_eq!(answer, Ok(Some(Decision::Allow)));
}

#[test]
fn deny_escape_enter_and_the_close_box_refuse() {
    let deny = consent(site(), LONG, |w| w.item(ID_DENY).click());
    assert_eq!(deny, Ok(Some(Decision::Deny)));
    // Escape, at once (refusals need no guard).
    let escape = consent(site(), LONG, |w| w.item(ID_DENY).key(VK_ESCAPE));
    assert_eq!(escape, Ok(Some(Decision::Deny)));
    // Enter alone: Deny is the default button and has the focus.
    let enter = consent(site(), LONG, |w| {
        after_the_guard();
        w.item(ID_DENY).key(VK_RETURN);
    });
    assert_eq!(enter, Ok(Some(Decision::Deny)));
    let closed = consent(site(), LONG, |w| w.post(WM_CLOSE, 0, 0));
    assert_eq!(closed, Ok(Some(Decision::Deny)));
}

#[test]
fn mnemonics_answer_with_alt_only() {
    let answer = consent(site(), LONG, |w| {
        after_the_guard();
        // A plain `a`, `w` or `d` (someone typing elsewhere) is no answer.
        w.item(ID_DENY).type_text("awd");
        std::thread::sleep(Duration::from_millis(300));
        assert!(Win::exists(&consent_title()), "a plain letter answered");
        w.item(ID_DENY).alt('w');
    });
    assert_eq!(answer, Ok(Some(Decision::AllowAlways)));
    let answer = consent(site(), LONG, |w| {
        after_the_guard();
        w.item(ID_DENY).alt('a');
    });
    assert_eq!(answer, Ok(Some(Decision::Allow)));
    let answer = consent(site(), LONG, |w| w.item(ID_DENY).alt('d'));
    assert_eq!(answer, Ok(Some(Decision::Deny)));
}

#[test]
fn no_answer_in_time_closes_the_dialog() {
    let (answer, took) = consent_timed(site(), Duration::from_secs(2), |w| {
        assert_eq!(
            w.item(ID_COUNTDOWN).text(),
            "No answer within 2 s is a refusal."
        );
        std::thread::sleep(Duration::from_millis(1300));
        assert_eq!(
            w.item(ID_COUNTDOWN).text(),
            "No answer within 1 s is a refusal."
        );
    });
    assert_eq!(answer, Ok(None));
    // The dialog's own timer, not the agent's net a second later.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2900),
        "{took:?}"
    );
}

#[test]
fn dropping_the_request_takes_the_dialog_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let dialogs = WindowsDialogs::new();
    let request = site();
    let shown = std::thread::spawn(|| Win::find(&consent_title()));
    let asked = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), dialogs.ask(&request, LONG)).await
    });
    assert!(asked.is_err(), "the page went away first");
    shown.join().unwrap();
    Win::gone(&consent_title());
}

#[test]
fn the_pin_dialog_takes_the_pin_masked_and_shows_why_the_last_one_failed() {
    let answer = pin(
        Some("Wrong PIN. One try is left before the PIN locks."),
        LONG,
        |w| {
            assert_eq!(
                w.item(ID_ERROR).text(),
                "Wrong PIN. One try is left before the PIN locks."
            );
            assert_eq!(
                w.item(ID_INSTRUCTION).text(),
                "Enter the token's PIN to sign."
            );
            assert_eq!(w.item(ID_CERTIFICATE).text(), "Certificate: CN=Alice");
            let field = w.item(ID_PIN);
            assert_ne!(field.style() & ES_PASSWORD as u32, 0, "masked");
            // Typed in the first moment: meant for another window, and cleared.
            field.type_text("99");
            after_the_guard();
            assert_eq!(field.text(), "");
            field.type_text("12345é");
            field.key(VK_RETURN);
        },
    );
    match answer {
        Ok(PinAnswer::Pin(p)) => assert_eq!(p.expose(), "12345é"),
        _ => panic!("no PIN"),
    }
}

#[test]
fn the_pin_dialog_without_an_error_has_no_error_line() {
    let answer = pin(None, LONG, |w| {
        assert_eq!(w.item(ID_ERROR).0, 0);
        after_the_guard();
        w.item(ID_PIN).type_text("0000");
        w.item(ID_PIN).wait_for_text("0000");
        w.item(IDOK).click();
    });
    assert!(matches!(answer, Ok(PinAnswer::Pin(p)) if p.expose() == "0000"));
}

#[test]
fn cancel_escape_and_the_close_box_cancel_the_pin_dialog() {
    let cancel = pin(None, LONG, |w| {
        w.item(ID_PIN).type_text("1234");
        w.item(ID_PIN).wait_for_text("1234");
        w.item(IDCANCEL).click();
    });
    assert!(matches!(cancel, Ok(PinAnswer::Cancelled)));
    let escape = pin(None, LONG, |w| w.item(ID_PIN).key(VK_ESCAPE));
    assert!(matches!(escape, Ok(PinAnswer::Cancelled)));
    let closed = pin(None, LONG, |w| w.post(WM_CLOSE, 0, 0));
    assert!(matches!(closed, Ok(PinAnswer::Cancelled)));
}

#[test]
fn enter_in_the_guard_submits_nothing_and_no_answer_times_out() {
    let answer = pin(None, Duration::from_secs(2), |w| {
        w.item(ID_PIN).type_text("12");
        w.item(ID_PIN).key(VK_RETURN);
        std::thread::sleep(Duration::from_millis(200));
        assert!(Win::exists(&pin_title()), "Enter in the guard submitted");
    });
    assert!(matches!(answer, Ok(PinAnswer::TimedOut)));
}

#[test]
fn the_pin_pad_notice_stays_until_its_guard_drops() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime();
    let request = site();
    let guard = rt.block_on(WindowsDialogs::new().pin_pad_notice(&request));
    assert!(guard.is_some());
    let w = Win::find(&notice_title());
    assert_eq!(
        w.item(ID_INSTRUCTION).text(),
        "Type the PIN on the reader's keypad to sign, or press Cancel on the reader."
    );
    assert_eq!(w.item(ID_FINGERPRINT).text(), "Digest: ABABABAB ABABABAB");
    std::thread::sleep(Duration::from_millis(300));
    assert!(Win::exists(&notice_title()));
    drop(guard);
    Win::gone(&notice_title());
}

#[test]
fn the_state_lives_in_the_local_application_data_folder() {
    let local = std::env::var_os("LOCALAPPDATA").expect("LOCALAPPDATA");
    assert_eq!(
        super::default_state_file().unwrap(),
        std::path::Path::new(&local)
            .join("Keyport")
            .join("state.json")
    );
}

/// `SS_NOPREFIX`, as a window style.
const SS_NOPREFIX_STYLE: u32 = windows_sys::Win32::System::SystemServices::SS_NOPREFIX;
