//! Where each control of a [`DialogSpec`] goes, in client pixels: the text blocks top down at
//! the height their text needs, the PIN field under them, the buttons in a row at the bottom
//! right. Pure arithmetic over measurements the caller makes (`dialog.rs` measures with the
//! dialog's font), so it is unit-tested on every platform.

use super::spec::{DialogSpec, Style};

/// Margins and gaps, in pixels at 96 DPI (Windows scales a window of a process that does not
/// declare itself DPI-aware).
pub const MARGIN: i32 = 12;
pub const GAP: i32 = 6;
/// The width a text block wraps at.
pub const TEXT_WIDTH: i32 = 440;
pub const BUTTON_HEIGHT: i32 = 26;
pub const BUTTON_MIN_WIDTH: i32 = 80;
/// Padding left and right of a button's label.
pub const BUTTON_PAD: i32 = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub fn bottom(&self) -> i32 {
        self.y + self.h
    }
    pub fn right(&self) -> i32 {
        self.x + self.w
    }
    fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }
}

/// Every control's place, and the client area's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// (control id, place), in the order of `spec.blocks`.
    pub blocks: Vec<(u16, Rect)>,
    /// The PIN field's label and the field.
    pub field: Option<(Rect, Rect)>,
    /// (control id, place), in the order of `spec.buttons`.
    pub buttons: Vec<(u16, Rect)>,
    pub width: i32,
    pub height: i32,
}

impl Layout {
    /// Every rectangle, for checks.
    pub fn all(&self) -> Vec<Rect> {
        let mut all: Vec<Rect> = self.blocks.iter().map(|(_, r)| *r).collect();
        if let Some((label, field)) = self.field {
            all.extend([label, field]);
        }
        all.extend(self.buttons.iter().map(|(_, r)| *r));
        all
    }
}

/// Measurements of the dialog's font.
pub trait Measure {
    /// The height of `text` in `style`, wrapped at `width`.
    fn height(&self, text: &str, style: Style, width: i32) -> i32;
    /// The width of `text` on one line (a button label: its `&` is not drawn).
    fn width(&self, text: &str) -> i32;
    /// The height of one line.
    fn line(&self) -> i32;
}

/// Place `spec`'s controls.
pub fn place(spec: &DialogSpec, m: &impl Measure) -> Layout {
    let button_w = |label: &str| (m.width(label) + 2 * BUTTON_PAD).max(BUTTON_MIN_WIDTH);
    let row: i32 = spec
        .buttons
        .iter()
        .map(|b| button_w(&b.label) + GAP)
        .sum::<i32>()
        - GAP;
    let inner = TEXT_WIDTH.max(row);
    let mut y = MARGIN;
    let mut blocks = Vec::new();
    for (i, b) in spec.blocks.iter().enumerate() {
        let h = m.height(&b.text, b.style, inner).max(m.line());
        blocks.push((
            b.id,
            Rect {
                x: MARGIN,
                y,
                w: inner,
                h,
            },
        ));
        // The headline stands apart from the details.
        y += h + if i == 0 { 2 * GAP } else { GAP };
    }
    let field = spec.field.as_deref().map(|label| {
        let lw = m.width(label) + GAP;
        let fh = m.line() + 10;
        y += GAP;
        let placed = (
            Rect {
                x: MARGIN,
                y: y + (fh - m.line()) / 2,
                w: lw,
                h: m.line(),
            },
            Rect {
                x: MARGIN + lw,
                y,
                w: inner - lw,
                h: fh,
            },
        );
        y += fh + GAP;
        placed
    });
    let mut buttons = Vec::new();
    if !spec.buttons.is_empty() {
        y += GAP;
        let mut x = MARGIN + inner - row;
        for b in &spec.buttons {
            let w = button_w(&b.label);
            buttons.push((
                b.id,
                Rect {
                    x,
                    y,
                    w,
                    h: BUTTON_HEIGHT,
                },
            ));
            x += w + GAP;
        }
        y += BUTTON_HEIGHT + GAP;
    }
    Layout {
        blocks,
        field,
        buttons,
        width: inner + 2 * MARGIN,
        height: y - GAP + MARGIN,
    }
}

/// Whether no two controls overlap and all lie inside the client area (the tests' check; also
/// run on Windows on every real layout in debug builds).
pub fn is_sound(l: &Layout) -> bool {
    let all = l.all();
    let inside = all
        .iter()
        .all(|r| r.x >= 0 && r.y >= 0 && r.right() <= l.width && r.bottom() <= l.height);
    let apart = all
        .iter()
        .enumerate()
        .all(|(i, a)| all[i + 1..].iter().all(|b| !a.overlaps(b)));
    inside && apart
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentRequest;
    use crate::desktop::windows::spec;
    use std::time::Duration;

    /// A font of 7-pixel characters and 16-pixel lines that wraps by characters.
    struct Fixed;
    impl Measure for Fixed {
        fn height(&self, text: &str, _: Style, width: i32) -> i32 {
            let per_line = (width / 7).max(1) as usize;
            (text.chars().count().div_ceil(per_line).max(1) * 16) as i32
        }
        fn width(&self, text: &str) -> i32 {
            7 * text.chars().filter(|c| *c != '&').count() as i32
        }
        fn line(&self) -> i32 {
            16
        }
    }

    #[test]
    fn blocks_stack_then_the_field_then_the_buttons_at_the_bottom_right() {
        let request = ConsentRequest::sample("https://a.example", "CN=Alice");
        let s = spec::pin(&request, Some("Wrong PIN."), Duration::from_secs(9));
        let l = place(&s, &Fixed);
        assert!(is_sound(&l), "{l:?}");
        assert_eq!(l.blocks.len(), s.blocks.len());
        for pair in l.blocks.windows(2) {
            assert!(pair[0].1.bottom() < pair[1].1.y);
        }
        let (label, field) = l.field.unwrap();
        assert!(l.blocks.last().unwrap().1.bottom() < field.y);
        assert_eq!(label.x, MARGIN);
        assert_eq!(field.right(), l.width - MARGIN);
        let ids: Vec<u16> = l.buttons.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [spec::IDOK, spec::IDCANCEL]);
        let (_, last) = l.buttons.last().unwrap();
        assert_eq!(last.right(), l.width - MARGIN);
        assert_eq!(last.bottom(), l.height - MARGIN);
        assert!(field.bottom() < last.y);
    }

    #[test]
    fn a_long_subject_wraps_and_pushes_nothing_out() {
        let long = "CN=".to_string() + &"W".repeat(400);
        let request = ConsentRequest::sample("https://a.example", &long);
        let short = place(
            &spec::consent(
                &ConsentRequest::sample("https://a.example", "CN=A"),
                Duration::from_secs(9),
            ),
            &Fixed,
        );
        let s = spec::consent(&request, Duration::from_secs(9));
        let l = place(&s, &Fixed);
        assert!(is_sound(&l), "{l:?}");
        assert_eq!(l.width, short.width, "wraps, does not widen");
        assert!(l.height > short.height);
        let cert = l.blocks.iter().find(|(id, _)| *id == spec::ID_CERTIFICATE);
        assert!(cert.unwrap().1.h >= 3 * 16);
        // The fingerprint and the countdown keep their own lines.
        assert_eq!(l.blocks.len(), 6);
    }

    #[test]
    fn wide_buttons_widen_the_dialog_and_a_notice_has_no_button_row() {
        struct Wide;
        impl Measure for Wide {
            fn height(&self, _: &str, _: Style, _: i32) -> i32 {
                20
            }
            fn width(&self, text: &str) -> i32 {
                30 * text.len() as i32
            }
            fn line(&self) -> i32 {
                20
            }
        }
        let request = ConsentRequest::sample("https://a.example", "CN=A");
        let l = place(&spec::consent(&request, Duration::from_secs(9)), &Wide);
        assert!(is_sound(&l), "{l:?}");
        assert!(l.width > TEXT_WIDTH + 2 * MARGIN);
        assert_eq!(l.buttons[0].1.x, MARGIN);

        let n = place(&spec::notice(&request), &Fixed);
        assert!(is_sound(&n));
        assert!(n.buttons.is_empty() && n.field.is_none());
        assert_eq!(n.height, n.blocks.last().unwrap().1.bottom() + MARGIN);
    }
}
