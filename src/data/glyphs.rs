//! The built-in digit font of the moving-digits generator: each digit 0-9 as polylines in a
//! 4×6 design box, rendered with a round soft pen by `moving_digits`.

/// Glyph design box in stroke units: x in `0..=4` (left to right), y in `0..=6` (top to
/// bottom). One unit is `glyph_scale` pixels.
pub(crate) const GLYPH_UNITS_W: f32 = 4.0;
pub(crate) const GLYPH_UNITS_H: f32 = 6.0;
pub(crate) type Stroke = &'static [(f32, f32)];

/// The digits 0-9 as polylines in the 4×6 design box. Curves are approximated by a few
/// chords; the round pen and soft edge hide the corners.
pub(crate) const DIGIT_STROKES: [&[Stroke]; 10] = [
    // 0: a closed oval
    &[&[
        (1.2, 0.0),
        (2.8, 0.0),
        (3.8, 1.0),
        (4.0, 3.0),
        (3.8, 5.0),
        (2.8, 6.0),
        (1.2, 6.0),
        (0.2, 5.0),
        (0.0, 3.0),
        (0.2, 1.0),
        (1.2, 0.0),
    ]],
    // 1: flag and stem
    &[&[(1.0, 1.4), (2.4, 0.0), (2.4, 6.0)]],
    // 2: hook, diagonal, base
    &[&[
        (0.2, 1.2),
        (1.2, 0.1),
        (2.8, 0.1),
        (3.8, 1.1),
        (3.7, 2.3),
        (0.2, 5.9),
        (4.0, 5.9),
    ]],
    // 3: two bowls
    &[&[
        (0.3, 0.6),
        (1.3, 0.0),
        (2.9, 0.0),
        (3.8, 0.9),
        (3.7, 2.1),
        (2.7, 2.9),
        (1.5, 2.9),
        (2.7, 2.9),
        (3.9, 3.9),
        (3.9, 5.0),
        (2.9, 6.0),
        (1.2, 6.0),
        (0.2, 5.3),
    ]],
    // 4: open four
    &[&[(2.9, 6.0), (2.9, 0.0), (0.0, 4.2), (4.0, 4.2)]],
    // 5: top bar, short stem, belly
    &[&[
        (3.8, 0.0),
        (0.7, 0.0),
        (0.4, 2.7),
        (1.6, 2.4),
        (3.0, 2.6),
        (3.9, 3.6),
        (3.9, 5.0),
        (2.9, 6.0),
        (1.2, 6.0),
        (0.1, 5.3),
    ]],
    // 6: swoop into a loop
    &[&[
        (3.4, 0.1),
        (2.0, 0.3),
        (0.8, 1.5),
        (0.1, 3.4),
        (0.2, 5.0),
        (1.2, 6.0),
        (2.9, 6.0),
        (3.9, 5.0),
        (3.8, 3.8),
        (2.8, 3.0),
        (1.2, 3.0),
        (0.2, 3.9),
    ]],
    // 7: bar and diagonal
    &[&[(0.0, 0.0), (4.0, 0.0), (1.5, 6.0)]],
    // 8: two stacked loops in one stroke
    &[&[
        (2.0, 2.9),
        (0.5, 2.2),
        (0.4, 0.9),
        (1.3, 0.0),
        (2.7, 0.0),
        (3.6, 0.9),
        (3.5, 2.2),
        (2.0, 2.9),
        (0.3, 3.8),
        (0.2, 5.1),
        (1.2, 6.0),
        (2.8, 6.0),
        (3.8, 5.1),
        (3.7, 3.8),
        (2.0, 2.9),
    ]],
    // 9: loop and tail
    &[&[
        (3.8, 1.9),
        (2.8, 2.9),
        (1.2, 2.9),
        (0.2, 2.0),
        (0.2, 0.9),
        (1.2, 0.0),
        (2.8, 0.0),
        (3.8, 0.9),
        (3.8, 2.2),
        (3.4, 4.4),
        (2.4, 6.0),
    ]],
];
