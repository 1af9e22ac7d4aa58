//! A 3×5 pixel font with just the characters the loss chart needs (digits, `. - e +`, and
//! the letters of "train", "held-out", "epoch", "loss"). A bitmap font this small stays sharp
//! at integer scales, which the anti-aliased stroke digits of the generator do not.

/// Glyph width and height in font pixels; characters advance by `GLYPH_W + 1`.
pub(crate) const GLYPH_W: usize = 3;
pub(crate) const GLYPH_H: usize = 5;

/// Rows top to bottom; `#` is ink.
fn rows(c: char) -> Option<[&'static str; 5]> {
    Some(match c {
        '0' => ["###", "#.#", "#.#", "#.#", "###"],
        '1' => [".#.", "##.", ".#.", ".#.", "###"],
        '2' => ["###", "..#", "###", "#..", "###"],
        '3' => ["###", "..#", ".##", "..#", "###"],
        '4' => ["#.#", "#.#", "###", "..#", "..#"],
        '5' => ["###", "#..", "###", "..#", "###"],
        '6' => ["###", "#..", "###", "#.#", "###"],
        '7' => ["###", "..#", "..#", ".#.", ".#."],
        '8' => ["###", "#.#", "###", "#.#", "###"],
        '9' => ["###", "#.#", "###", "..#", "###"],
        '.' => ["...", "...", "...", "...", ".#."],
        '-' => ["...", "...", "###", "...", "..."],
        '+' => ["...", ".#.", "###", ".#.", "..."],
        'a' => ["...", "##.", ".##", "#.#", "###"],
        'c' => ["...", ".##", "#..", "#..", ".##"],
        'd' => ["..#", "..#", ".##", "#.#", ".##"],
        'e' => ["...", ".#.", "###", "#..", ".##"],
        'h' => ["#..", "#..", "##.", "#.#", "#.#"],
        'i' => [".#.", "...", ".#.", ".#.", ".#."],
        'l' => [".#.", ".#.", ".#.", ".#.", ".##"],
        'n' => ["...", "##.", "#.#", "#.#", "#.#"],
        'o' => ["...", ".#.", "#.#", "#.#", ".#."],
        'p' => ["...", "##.", "#.#", "##.", "#.."],
        'r' => ["...", ".##", "#..", "#..", "#.."],
        's' => ["...", ".##", "#..", "..#", "##."],
        't' => [".#.", "###", ".#.", ".#.", ".##"],
        'u' => ["...", "#.#", "#.#", "#.#", ".##"],
        _ => return None,
    })
}

/// Width in pixels of `text` drawn at `scale`.
pub(crate) fn text_width(text: &str, scale: usize) -> usize {
    let n = text.chars().count();
    if n == 0 {
        0
    } else {
        (n * (GLYPH_W + 1) - 1) * scale
    }
}

/// Calls `plot(x, y)` for every ink pixel of `text` with its top-left corner at `(x, y)`.
/// Unknown characters (including space) leave a blank cell.
pub(crate) fn draw_text(
    text: &str,
    x: usize,
    y: usize,
    scale: usize,
    mut plot: impl FnMut(usize, usize),
) {
    for (i, c) in text.chars().enumerate() {
        let Some(glyph) = rows(c) else { continue };
        let cx = x + i * (GLYPH_W + 1) * scale;
        for (r, row) in glyph.iter().enumerate() {
            for (k, b) in row.bytes().enumerate() {
                if b == b'#' {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            plot(cx + k * scale + dx, y + r * scale + dy);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chart_character_has_a_glyph() {
        for c in "0123456789.-+e trainheld-outepochloss".chars() {
            assert!(c == ' ' || rows(c).is_some(), "{c:?}");
        }
        // The chart formats numbers with Rust's `{:e}`, which can emit only these.
        assert_eq!(text_width("1.5e-3", 2), (6 * 4 - 1) * 2);
    }

    #[test]
    fn glyphs_are_three_wide() {
        for c in "0123456789.-+acdehilnoprstu".chars() {
            let g = rows(c).unwrap();
            assert!(g.iter().all(|r| r.len() == GLYPH_W), "{c}");
            assert!(g.iter().any(|r| r.contains('#')), "{c} is blank");
        }
    }
}
