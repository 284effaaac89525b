//! A 3×5 bitmap font for digits and a few signs, so pictures can carry numbers without
//! depending on installed fonts.

/// Rows of 3 bits (most significant = left column) for `0-9`, `n`, `=`, `#`, `/`, ` `.
fn glyph(ch: char) -> [u8; 5] {
    match ch {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        'n' => [0b000, 0b000, 0b110, 0b101, 0b101],
        '=' => [0b000, 0b111, 0b000, 0b111, 0b000],
        '#' => [0b101, 0b111, 0b101, 0b111, 0b101],
        '/' => [0b001, 0b001, 0b010, 0b100, 0b100],
        _ => [0; 5],
    }
}

/// Width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 4 * scale
}

/// Draws `text` with its top-left corner at (x, y), clipped to the canvas.
pub fn draw_text(canvas: &mut image::RgbImage, x: u32, y: u32, text: &str, scale: u32, colour: image::Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let left = x + i as u32 * 4 * scale;
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..3u32 {
                if bits & (0b100 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (left + col * scale + dx, y + row as u32 * scale + dy);
                        if px < canvas.width() && py < canvas.height() {
                            canvas.put_pixel(px, py, colour);
                        }
                    }
                }
            }
        }
    }
}
