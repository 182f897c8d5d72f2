//! One Win32 window that draws a [`DialogSpec`], on a thread of its own with its own message
//! loop; [`Dialog`] is the agent's handle on it.
//!
//! # The window
//! A top-level window of our own class (`KeyportDialog`), always on top, with the system's
//! message font: STATIC controls for the texts (`SS_NOPREFIX`: an `&` in a certificate's subject
//! is drawn, never a shortcut; `SS_EDITCONTROL`: a long word wraps as it was measured), a masked
//! EDIT (`ES_PASSWORD`) for the PIN, BUTTONs. The message loop gives every message to
//! `IsDialogMessageW` first, which gives it a dialog's keyboard: Tab, Enter (the default
//! button, or the focused one), Escape (`IDCANCEL`), Alt+letter (a button's mnemonic). Plain
//! letters (`WM_CHAR`) reach only the PIN field: a person typing elsewhere when the dialog
//! appears cannot press "Allow" with an `a`, since a mnemonic needs Alt. The buttons that say
//! yes also stay disabled for [`INPUT_GUARD`], and what was typed into the PIN field in that
//! moment is cleared.
//!
//! # Endings
//! A button, Escape, the close box (Alt+F4), its own timer ([`Ending::TimedOut`]), or the agent
//! taking it back ([`Dialog::withdraw`], also when the [`Dialog`] is dropped:
//! [`Ending::Withdrawn`]). The thread sends the ending back through a tokio oneshot.
//!
//! # The PIN
//! Read with `GetWindowTextW` into zeroizing memory, decoded into a `String` allocated once at
//! its final size, moved into a [`Pin`]. Before the window goes, whatever the ending, the field's
//! text is overwritten in place with as many `x`, its undo buffer emptied, and the field
//! cleared: what user32 keeps of it is overwritten as far as the control lets us.

use super::spec::{DialogSpec, Ending, IDOK, ID_COUNTDOWN, ID_ERROR, ID_PIN, INPUT_GUARD};
use super::window::{self, wide, Fonts};
use crate::consent::text::timeout_line;
use keyport_protocol::Pin;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, WPARAM};
use windows_sys::Win32::Graphics::Gdi::{
    GetSysColor, GetSysColorBrush, SetBkColor, SetTextColor, COLOR_3DFACE, HDC,
};
use windows_sys::Win32::UI::Controls::EM_EMPTYUNDOBUFFER;
use windows_sys::Win32::UI::Input::KeyboardAndMouse::{EnableWindow, SetFocus};
use windows_sys::Win32::UI::WindowsAndMessaging::*;

/// Posted to the window to take it back.
const WM_WITHDRAW: u32 = WM_APP + 1;
const TIMER_ARM: usize = 1;
const TIMER_TICK: usize = 2;
const TIMER_DEADLINE: usize = 3;

/// How a dialog ended, with the PIN field's content when it was submitted.
pub struct Ended {
    pub ending: Ending,
    pub pin: Option<Pin>,
}

/// What the agent's side and the dialog's thread share.
#[derive(Default)]
struct Shared {
    /// The window, while it exists (`HWND` as an integer: it is posted to from other threads).
    hwnd: Option<isize>,
    /// Taken back: a window still being made goes at once.
    withdrawn: bool,
}

/// A dialog on screen, or about to be. Dropping it takes the dialog back.
pub struct Dialog {
    shared: Arc<Mutex<Shared>>,
    answer: oneshot::Receiver<Result<Ended, String>>,
}

impl Dialog {
    /// Show `spec` on a new thread. `Err`: no thread could be started.
    pub fn open(spec: DialogSpec) -> Result<Dialog, String> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, answer) = oneshot::channel();
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("keyport-dialog".into())
            .spawn(move || {
                // SAFETY: Win32 calls on this thread's own window; see `run`.
                unsafe { run(spec, &theirs, tx) }
            })
            .map_err(|e| format!("cannot start the dialog's thread ({e})"))?;
        Ok(Dialog { shared, answer })
    }

    /// Wait at most `limit` for the ending (the dialog has its own timer; this is the net under
    /// it). Past `limit` the dialog is taken back: [`Ending::TimedOut`].
    pub async fn answer(&mut self, limit: Duration) -> Result<Ended, String> {
        match tokio::time::timeout(limit, &mut self.answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the dialog's thread ended without an answer".into()),
            Err(_) => {
                self.withdraw();
                Ok(Ended {
                    ending: Ending::TimedOut,
                    pin: None,
                })
            }
        }
    }

    /// Take the dialog back (it ends as [`Ending::Withdrawn`]). Harmless once it has ended.
    pub fn withdraw(&self) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.withdrawn = true;
        if let Some(hwnd) = shared.hwnd {
            // SAFETY: the window exists while `hwnd` is set (its thread clears it under this
            // lock before the window goes), so the handle cannot name another window.
            unsafe { PostMessageW(hwnd as HWND, WM_WITHDRAW, 0, 0) };
        }
    }
}

impl Drop for Dialog {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// The window's state, reached from its window procedure (through `GWLP_USERDATA`). Only
/// shared references: the procedure is re-entered by the messages it sends.
struct State {
    spec: DialogSpec,
    shared: Arc<Mutex<Shared>>,
    deadline: Option<Instant>,
    armed: Cell<bool>,
    /// Where the ending goes; taken when the dialog ends.
    reply: RefCell<Option<Reply>>,
}

type Reply = oneshot::Sender<Result<Ended, String>>;

/// Dialogs open now, to cascade a new one off the last.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Make the window and run its loop until it ends; say how through `reply`.
unsafe fn run(spec: DialogSpec, shared: &Arc<Mutex<Shared>>, reply: Reply) {
    let fonts = Fonts::new();
    let state = Box::new(State {
        deadline: spec.timeout.map(|t| Instant::now() + t),
        spec,
        shared: shared.clone(),
        armed: Cell::new(false),
        reply: RefCell::new(Some(reply)),
    });
    let spec = &state.spec;
    let nth = OPEN.fetch_add(1, Ordering::SeqCst) % 6;
    let hwnd = match window::create(
        spec,
        &fonts,
        Some(wndproc),
        &*state as *const State as _,
        nth,
    ) {
        Ok(hwnd) => hwnd,
        Err(why) => {
            OPEN.fetch_sub(1, Ordering::SeqCst);
            if let Some(reply) = state.reply.borrow_mut().take() {
                let _ = reply.send(Err(why));
            }
            return;
        }
    };
    if spec.buttons.iter().any(|b| b.says_yes) {
        SetTimer(hwnd, TIMER_ARM, INPUT_GUARD.as_millis() as u32, None);
    }
    if let Some(timeout) = spec.timeout {
        SetTimer(hwnd, TIMER_TICK, 1000, None);
        let ms = timeout.as_millis().clamp(1, USER_TIMER_MAXIMUM as u128) as u32;
        SetTimer(hwnd, TIMER_DEADLINE, ms, None);
    }

    // Visible to `withdraw` from here on; taken back already: it goes before it shows.
    let withdrawn = {
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        s.hwnd = Some(hwnd as isize);
        s.withdrawn
    };
    if withdrawn {
        finish(hwnd, &state, Ending::Withdrawn);
    } else if let Some(focus) = spec.focus {
        ShowWindow(hwnd, SW_SHOWNORMAL);
        if SetForegroundWindow(hwnd) == 0 {
            // Windows lets a background process take the foreground only in some cases: the
            // dialog is on top all the same; its taskbar button flashes.
            let flash = FLASHWINFO {
                cbSize: std::mem::size_of::<FLASHWINFO>() as u32,
                hwnd,
                dwFlags: FLASHW_ALL | FLASHW_TIMERNOFG,
                uCount: 0,
                dwTimeout: 0,
            };
            FlashWindowEx(&flash);
        }
        SetFocus(GetDlgItem(hwnd, focus as i32));
    } else {
        // A notice: shown on top, without taking the keyboard from anyone.
        ShowWindow(hwnd, SW_SHOWNOACTIVATE);
    }

    let field = GetDlgItem(hwnd, ID_PIN as i32);
    let mut msg: MSG = std::mem::zeroed();
    while GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) > 0 {
        // Plain characters only for the PIN field: a button's mnemonic needs Alt (WM_SYSCHAR).
        if msg.message == WM_CHAR && (field.is_null() || msg.hwnd != field) {
            continue;
        }
        if IsDialogMessageW(hwnd, &msg) == 0 {
            TranslateMessage(&msg);
            DispatchMessageW(&msg);
        }
    }
    if IsWindow(hwnd) != 0 {
        // The loop failed (GetMessageW said -1): the window must not outlive its state.
        shared.lock().unwrap_or_else(|e| e.into_inner()).hwnd = None;
        SetWindowLongPtrW(hwnd, GWLP_USERDATA, 0);
        DestroyWindow(hwnd);
    }
    OPEN.fetch_sub(1, Ordering::SeqCst);
    drop(fonts);
    let reply = state.reply.borrow_mut().take();
    if let Some(reply) = reply {
        let _ = reply.send(Err("the dialog ended without an answer".into()));
    }
}

/// End the dialog (once): read the PIN if it was submitted, wipe the field, answer, destroy
/// the window. The answer goes first: under Wine without a window manager, taking a window off
/// the screen can wait seconds for the X server's word (`wait_for_withdrawn_state`).
unsafe fn finish(hwnd: HWND, state: &State, ending: Ending) {
    if state.reply.borrow().is_none() {
        return;
    }
    let field = GetDlgItem(hwnd, ID_PIN as i32);
    let mut pin = None;
    if ending == Ending::Button(IDOK) && !field.is_null() {
        match read_pin(field) {
            Some(p) => pin = Some(p),
            None => {
                // Not text (a lone UTF-16 surrogate, pasted): nothing to sign with; the
                // field is cleared for another try.
                wipe(field);
                return;
            }
        }
    }
    if !field.is_null() {
        wipe(field);
    }
    if let Some(reply) = state.reply.borrow_mut().take() {
        let _ = reply.send(Ok(Ended { ending, pin }));
    }
    DestroyWindow(hwnd);
}

/// The field's text as a PIN (None: it is not valid UTF-16).
unsafe fn read_pin(field: HWND) -> Option<Pin> {
    let len = GetWindowTextLengthW(field).max(0) as usize;
    let mut units = zeroize::Zeroizing::new(vec![0u16; len + 1]);
    let got = GetWindowTextW(field, units.as_mut_ptr(), units.len() as i32).max(0) as usize;
    // At most 3 UTF-8 bytes per UTF-16 unit: the String never grows, so never leaves a copy.
    let mut text = zeroize::Zeroizing::new(String::with_capacity(3 * got));
    for c in char::decode_utf16(units[..got.min(len)].iter().copied()) {
        text.push(c.ok()?);
    }
    Some(Pin::new(std::mem::take(&mut *text)))
}

/// Overwrite the field's text in place, empty its undo buffer, clear it.
unsafe fn wipe(field: HWND) {
    let len = GetWindowTextLengthW(field).max(0) as usize;
    if len > 0 {
        let filler: Vec<u16> = std::iter::repeat_n(u16::from(b'x'), len)
            .chain([0])
            .collect();
        SendMessageW(field, WM_SETTEXT, 0, filler.as_ptr() as LPARAM);
    }
    SendMessageW(field, EM_EMPTYUNDOBUFFER, 0, 0);
    let empty = [0u16];
    SendMessageW(field, WM_SETTEXT, 0, empty.as_ptr() as LPARAM);
}

unsafe fn on_timer(hwnd: HWND, state: &State, timer: usize) {
    match timer {
        TIMER_ARM => {
            KillTimer(hwnd, TIMER_ARM);
            state.armed.set(true);
            for b in state.spec.buttons.iter().filter(|b| b.says_yes) {
                EnableWindow(GetDlgItem(hwnd, b.id as i32), 1);
            }
            let field = GetDlgItem(hwnd, ID_PIN as i32);
            if !field.is_null() {
                // Typed in the first moment: meant for another window.
                wipe(field);
            }
        }
        TIMER_TICK => {
            if let Some(deadline) = state.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                let secs = left.as_millis().div_ceil(1000) as u64;
                let line = wide(&timeout_line(Duration::from_secs(secs)));
                let countdown = GetDlgItem(hwnd, ID_COUNTDOWN as i32);
                SendMessageW(countdown, WM_SETTEXT, 0, line.as_ptr() as LPARAM);
            }
        }
        TIMER_DEADLINE => finish(hwnd, state, Ending::TimedOut),
        _ => {}
    }
}

unsafe extern "system" fn wndproc(hwnd: HWND, msg: u32, wp: WPARAM, lp: LPARAM) -> LRESULT {
    if msg == WM_NCCREATE {
        let create = lp as *const CREATESTRUCTW;
        SetWindowLongPtrW(hwnd, GWLP_USERDATA, (*create).lpCreateParams as isize);
        return DefWindowProcW(hwnd, msg, wp, lp);
    }
    let state = GetWindowLongPtrW(hwnd, GWLP_USERDATA) as *const State;
    if state.is_null() {
        return DefWindowProcW(hwnd, msg, wp, lp);
    }
    // SAFETY: the Box in `run` outlives the window (the loop ends after WM_DESTROY).
    let state = &*state;
    match msg {
        WM_COMMAND if (wp >> 16) & 0xffff == BN_CLICKED as usize => {
            let id = (wp & 0xffff) as u16;
            if let Some(button) = state.spec.button(id) {
                // A yes before the guard is over is not the person's (see the module's docs).
                if !button.says_yes || state.armed.get() {
                    finish(hwnd, state, Ending::Button(id));
                }
            }
            0
        }
        DM_GETDEFID => match state.spec.default {
            Some(id) => ((DC_HASDEFID << 16) | id as u32) as LRESULT,
            None => 0,
        },
        WM_CLOSE => {
            finish(hwnd, state, Ending::Closed);
            0
        }
        WM_WITHDRAW => {
            finish(hwnd, state, Ending::Withdrawn);
            0
        }
        WM_TIMER => {
            on_timer(hwnd, state, wp);
            0
        }
        WM_CTLCOLORSTATIC if GetDlgCtrlID(lp as HWND) == ID_ERROR as i32 => {
            let dc = wp as HDC;
            SetTextColor(dc, 0x0000_00C0);
            SetBkColor(dc, GetSysColor(COLOR_3DFACE));
            GetSysColorBrush(COLOR_3DFACE) as LRESULT
        }
        WM_DESTROY => {
            state.shared.lock().unwrap_or_else(|e| e.into_inner()).hwnd = None;
            PostQuitMessage(0);
            0
        }
        _ => DefWindowProcW(hwnd, msg, wp, lp),
    }
}
