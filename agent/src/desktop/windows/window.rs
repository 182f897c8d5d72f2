//! Building a dialog's window from its [`DialogSpec`]: the window class, the system's message
//! font, measuring the texts for [`layout::place`], the child controls, and where the window
//! goes on the screen. `dialog.rs` runs it.

use super::layout::{self, Measure, Rect};
use super::spec::{DialogSpec, Style, ID_PIN, ID_PIN_LABEL, MAX_PIN};
use std::sync::OnceLock;
use windows_sys::Win32::Foundation::{GetLastError, HWND, RECT};
use windows_sys::Win32::Graphics::Gdi::{
    CreateFontIndirectW, DeleteObject, DrawTextW, GetDC, ReleaseDC, SelectObject, COLOR_3DFACE,
    DT_CALCRECT, DT_EDITCONTROL, DT_NOPREFIX, DT_SINGLELINE, DT_WORDBREAK, FW_BOLD, HDC, HFONT,
    LOGFONTW,
};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::System::SystemServices::{SS_EDITCONTROL, SS_LEFT, SS_NOPREFIX};
use windows_sys::Win32::UI::Controls::EM_LIMITTEXT;
use windows_sys::Win32::UI::WindowsAndMessaging::*;

/// The dialog's window class.
pub const CLASS: &str = "KeyportDialog";

/// UTF-16 with a terminating NUL.
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

/// The dialog class, registered once per process.
unsafe fn class(wndproc: WNDPROC) -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let name = wide(CLASS);
            let wc = WNDCLASSEXW {
                cbSize: std::mem::size_of::<WNDCLASSEXW>() as u32,
                style: 0,
                lpfnWndProc: wndproc,
                cbClsExtra: 0,
                cbWndExtra: 0,
                hInstance: GetModuleHandleW(std::ptr::null()),
                hIcon: std::ptr::null_mut(),
                hCursor: LoadCursorW(std::ptr::null_mut(), IDC_ARROW),
                hbrBackground: (COLOR_3DFACE + 1) as usize as _,
                lpszMenuName: std::ptr::null(),
                // Copied by RegisterClassExW.
                lpszClassName: name.as_ptr(),
                hIconSm: std::ptr::null_mut(),
            };
            match RegisterClassExW(&wc) {
                0 => Err(format!(
                    "cannot register the dialog's window class (error {})",
                    GetLastError()
                )),
                _ => Ok(()),
            }
        })
        .clone()
}

/// The system's message font, and its bold cut.
pub struct Fonts {
    pub normal: HFONT,
    pub bold: HFONT,
}

impl Fonts {
    pub unsafe fn new() -> Fonts {
        let mut ncm: NONCLIENTMETRICSW = std::mem::zeroed();
        ncm.cbSize = std::mem::size_of::<NONCLIENTMETRICSW>() as u32;
        let mut lf = if SystemParametersInfoW(
            SPI_GETNONCLIENTMETRICS,
            ncm.cbSize,
            &mut ncm as *mut _ as *mut _,
            0,
        ) != 0
        {
            ncm.lfMessageFont
        } else {
            let mut lf: LOGFONTW = std::mem::zeroed();
            lf.lfHeight = -12;
            lf
        };
        let normal = CreateFontIndirectW(&lf);
        lf.lfWeight = FW_BOLD as i32;
        let bold = CreateFontIndirectW(&lf);
        Fonts { normal, bold }
    }

    pub fn of(&self, style: Style) -> HFONT {
        match style {
            Style::Headline => self.bold,
            Style::Body | Style::Error => self.normal,
        }
    }
}

impl Drop for Fonts {
    fn drop(&mut self) {
        // SAFETY: ours, and no window uses them any more (dropped after the loop ends).
        unsafe {
            DeleteObject(self.normal);
            DeleteObject(self.bold);
        }
    }
}

/// Measuring with the dialog's fonts on a device context of its window.
struct Gdi<'a> {
    dc: HDC,
    fonts: &'a Fonts,
}

impl Gdi<'_> {
    fn calc(&self, text: &str, font: HFONT, width: i32, format: u32) -> RECT {
        let w: Vec<u16> = text.encode_utf16().collect();
        let mut rc = RECT {
            left: 0,
            top: 0,
            right: width,
            bottom: 0,
        };
        // SAFETY: a valid DC and font; `w` outlives the call, its length is given.
        unsafe {
            let old = SelectObject(self.dc, font);
            DrawTextW(
                self.dc,
                w.as_ptr(),
                w.len() as i32,
                &mut rc,
                DT_CALCRECT | format,
            );
            SelectObject(self.dc, old);
        }
        rc
    }
}

impl Measure for Gdi<'_> {
    fn height(&self, text: &str, style: Style, width: i32) -> i32 {
        let rc = self.calc(
            text,
            self.fonts.of(style),
            width,
            DT_WORDBREAK | DT_EDITCONTROL | DT_NOPREFIX,
        );
        rc.bottom - rc.top
    }
    fn width(&self, text: &str) -> i32 {
        let rc = self.calc(text, self.fonts.normal, 0, DT_SINGLELINE);
        rc.right - rc.left
    }
    fn line(&self) -> i32 {
        let rc = self.calc("Ag", self.fonts.normal, 0, DT_SINGLELINE);
        rc.bottom - rc.top
    }
}

/// A child control to make.
struct Child<'a> {
    class: &'a str,
    text: &'a str,
    style: u32,
    ex: u32,
    id: u16,
}

/// Make `child` in `parent` at `r`, in `font`.
unsafe fn control(parent: HWND, child: Child, r: Rect, font: HFONT) -> HWND {
    let (class, text) = (wide(child.class), wide(child.text));
    let hwnd = CreateWindowExW(
        child.ex,
        class.as_ptr(),
        text.as_ptr(),
        WS_CHILD | WS_VISIBLE | child.style,
        r.x,
        r.y,
        r.w,
        r.h,
        parent,
        child.id as usize as HMENU,
        GetModuleHandleW(std::ptr::null()),
        std::ptr::null(),
    );
    SendMessageW(hwnd, WM_SETFONT, font as usize, 1);
    hwnd
}

/// Make the (hidden) window for `spec` with all its controls, placed on the screen (`nth`:
/// cascaded off the dialogs already open). `param` reaches `wndproc` in `WM_NCCREATE`.
pub unsafe fn create(
    spec: &DialogSpec,
    fonts: &Fonts,
    wndproc: WNDPROC,
    param: *const core::ffi::c_void,
    nth: usize,
) -> Result<HWND, String> {
    class(wndproc)?;
    let ex = WS_EX_TOPMOST | WS_EX_CONTROLPARENT | WS_EX_DLGMODALFRAME | WS_EX_APPWINDOW;
    let style = WS_POPUP | WS_CAPTION | WS_SYSMENU;
    let (class, title) = (wide(CLASS), wide(&spec.title));
    let hwnd = CreateWindowExW(
        ex,
        class.as_ptr(),
        title.as_ptr(),
        style,
        CW_USEDEFAULT,
        CW_USEDEFAULT,
        100,
        100,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        GetModuleHandleW(std::ptr::null()),
        param,
    );
    if hwnd.is_null() {
        return Err(format!(
            "cannot create the dialog window (error {})",
            GetLastError()
        ));
    }
    let dc = GetDC(hwnd);
    let placed = layout::place(spec, &Gdi { dc, fonts });
    ReleaseDC(hwnd, dc);
    debug_assert!(layout::is_sound(&placed), "{placed:?}");

    // The window around the client area, centred in the work area, cascaded off other dialogs.
    let mut rc = RECT {
        left: 0,
        top: 0,
        right: placed.width,
        bottom: placed.height,
    };
    AdjustWindowRectEx(&mut rc, style, 0, ex);
    let (w, h) = (rc.right - rc.left, rc.bottom - rc.top);
    let mut work: RECT = std::mem::zeroed();
    SystemParametersInfoW(SPI_GETWORKAREA, 0, &mut work as *mut _ as *mut _, 0);
    let nth = nth as i32;
    let x = work.left + ((work.right - work.left - w) / 2).max(0) + 24 * nth;
    let y = work.top + ((work.bottom - work.top - h) / 3).max(0) + 24 * nth;
    SetWindowPos(hwnd, HWND_TOPMOST, x, y, w, h, SWP_NOACTIVATE);

    for (block, (id, r)) in spec.blocks.iter().zip(&placed.blocks) {
        let child = Child {
            class: "STATIC",
            text: &block.text,
            style: SS_LEFT | SS_NOPREFIX | SS_EDITCONTROL,
            ex: 0,
            id: *id,
        };
        control(hwnd, child, *r, fonts.of(block.style));
    }
    if let (Some(label), Some((lr, fr))) = (spec.field.as_deref(), placed.field) {
        let child = Child {
            class: "STATIC",
            text: label,
            style: SS_LEFT | SS_NOPREFIX,
            ex: 0,
            id: ID_PIN_LABEL,
        };
        control(hwnd, child, lr, fonts.normal);
        let child = Child {
            class: "EDIT",
            text: "",
            style: WS_BORDER | WS_TABSTOP | (ES_PASSWORD | ES_AUTOHSCROLL) as u32,
            ex: WS_EX_CLIENTEDGE,
            id: ID_PIN,
        };
        let edit = control(hwnd, child, fr, fonts.normal);
        SendMessageW(edit, EM_LIMITTEXT, MAX_PIN, 0);
    }
    for (button, (id, r)) in spec.buttons.iter().zip(&placed.buttons) {
        let kind = match spec.default == Some(button.id) {
            true => BS_DEFPUSHBUTTON,
            false => BS_PUSHBUTTON,
        } as u32;
        let child = Child {
            class: "BUTTON",
            text: &button.label,
            style: kind | WS_TABSTOP | if button.says_yes { WS_DISABLED } else { 0 },
            ex: 0,
            id: *id,
        };
        control(hwnd, child, *r, fonts.normal);
    }
    Ok(hwnd)
}
