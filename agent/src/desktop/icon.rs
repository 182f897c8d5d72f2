//! The tray icon's pixel art, one image per [`IconState`]: a white key on a blue disc when idle,
//! orange with a red dot while a request awaits consent, grey with pause bars while paused.
//! Drawn in code (no image files, no decoder), the same for every tray shell.

use super::tray_model::IconState;

/// The icon's width and height in pixels.
pub const ICON_SIZE: u32 = 32;

/// The icon for `state`: RGBA, `ICON_SIZE` square, row by row.
pub fn icon_rgba(state: IconState) -> Vec<u8> {
    let n = ICON_SIZE as i32;
    let (key, disc) = match state {
        IconState::Idle => ([255, 255, 255, 255], [37, 99, 235, 255]),
        IconState::AwaitingConsent => ([255, 255, 255, 255], [234, 120, 20, 255]),
        IconState::Paused => ([235, 235, 235, 255], [110, 110, 110, 255]),
    };
    let mut px = vec![0u8; (n * n * 4) as usize];
    let mut put = |x: i32, y: i32, c: [u8; 4]| {
        if (0..n).contains(&x) && (0..n).contains(&y) {
            let i = ((y * n + x) * 4) as usize;
            px[i..i + 4].copy_from_slice(&c);
        }
    };
    let c = (n - 1) as f32 / 2.0;
    for y in 0..n {
        for x in 0..n {
            let (dx, dy) = (x as f32 - c, y as f32 - c);
            if dx * dx + dy * dy <= (c + 0.5) * (c + 0.5) {
                put(x, y, disc);
            }
        }
    }
    match state {
        IconState::Paused => {
            for y in 9..23 {
                for x in (10..14).chain(18..22) {
                    put(x, y, key);
                }
            }
        }
        _ => {
            // The key: a ring (bow), a shaft and two teeth.
            for y in 0..n {
                for x in 0..n {
                    let (dx, dy) = (x as f32 - 11.0, y as f32 - 15.5);
                    let d2 = dx * dx + dy * dy;
                    if (9.0..=30.0).contains(&d2) {
                        put(x, y, key);
                    }
                }
            }
            for x in 16..27 {
                for y in 14..18 {
                    put(x, y, key);
                }
            }
            for (x0, len) in [(21, 5), (25, 4)] {
                for x in x0..x0 + 2 {
                    for y in 18..18 + len {
                        put(x, y, key);
                    }
                }
            }
            if state == IconState::AwaitingConsent {
                for y in 0..9 {
                    for x in 23..32 {
                        let (dx, dy) = (x as f32 - 27.0, y as f32 - 4.0);
                        if dx * dx + dy * dy <= 16.0 {
                            put(x, y, [220, 38, 38, 255]);
                        }
                    }
                }
            }
        }
    }
    px
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_has_its_own_icon() {
        let icons = [
            icon_rgba(IconState::Idle),
            icon_rgba(IconState::AwaitingConsent),
            icon_rgba(IconState::Paused),
        ];
        for i in &icons {
            assert_eq!(i.len(), (ICON_SIZE * ICON_SIZE * 4) as usize);
            assert!(i.chunks(4).any(|p| p[3] == 0), "transparent corners");
        }
        assert_ne!(icons[0], icons[1]);
        assert_ne!(icons[0], icons[2]);
        assert_ne!(icons[1], icons[2]);
    }
}
