//! A drawing backend that places each glyph where the font says.
//!
//! plotters 0.3's ab_glyph text drawing puts every glyph's outline at the pen position and
//! drops its left side bearing, so in the compiled-in monospace font the narrow glyphs ('.',
//! '1', '(') sit at the left of their cell: "0.8" reads "0. 8". [`GlyphBackend`] wraps a
//! backend and draws text itself, with the same layout plotters computes (advances and kerning,
//! baseline at half the size, so nothing else on a chart moves) but each outline offset by its
//! bearing. Every other call goes to the wrapped backend unchanged.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

/// The one font every plot uses (see [`super::fonts`]); a constant of a crate we build with,
/// so it parses.
pub(crate) const FONT_BYTES: &[u8] = epaint_default_fonts::HACK_REGULAR;

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("compiled-in font parses"))
}

/// `B` with text drawn glyph by glyph at the right places.
pub struct GlyphBackend<B>(pub B);

impl<B: DrawingBackend> DrawingBackend for GlyphBackend<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, (iw, ih), src)
    }

    /// plotters' default `draw_text` (anchor, rotation, clipping) with the glyph placement
    /// fixed: the outline's pixel bounds are taken with their x offset, not from the pen.
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let size = style.size();
        let font = font().as_scaled(size as f32);
        let (width, height) = (advance_width(text, size) as i32, (size / 1.24) as i32);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let (w, h) = self.0.get_size();
        let mut pen = 0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                pen += font.kern(p, id);
            }
            prev = Some(id);
            if let Some(outline) = font.outline_glyph(font.scaled_glyph(c)) {
                let bounds = outline.px_bounds();
                let x0 = (pen + bounds.min.x) as i32;
                let y0 = (size as f32 / 2.0 + bounds.min.y) as i32;
                let mut result = Ok(());
                outline.draw(|x, y, coverage| {
                    if result.is_err() {
                        return;
                    }
                    let (x, y) = transform.transform(x0 + x as i32 + dx, y0 + y as i32 + dy);
                    let (x, y) = (pos.0 + x, pos.1 + y);
                    if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                        result = self.0.draw_pixel((x, y), color.mix(coverage as f64));
                    }
                });
                result?;
            }
            pen += font.h_advance(id);
        }
        Ok(())
    }
}

/// The width plotters' layout gives `text` at `size` (advances plus kerning): text is placed
/// in the box charts reserved for it.
fn advance_width(text: &str, size: f64) -> f32 {
    let font = font().as_scaled(size as f32);
    let mut width = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        width += font.h_advance(id);
        if let Some(p) = prev {
            width += font.kern(p, id);
        }
        prev = Some(id);
    }
    width
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::prelude::*;

    /// Columns of a `w`x`h` RGB picture that hold any ink.
    fn inked_columns(rgb: &[u8], w: usize, h: usize) -> Vec<bool> {
        (0..w)
            .map(|x| (0..h).any(|y| rgb[(y * w + x) * 3] < 160))
            .collect()
    }

    fn draw(text: &str, glyph_backend: bool) -> Vec<u8> {
        super::super::fonts();
        let (w, h) = (200u32, 40u32);
        let mut rgb = vec![255u8; (w * h * 3) as usize];
        {
            let style = TextStyle::from(("sans-serif", 30).into_font()).color(&BLACK);
            let bitmap = BitMapBackend::with_buffer(&mut rgb, (w, h));
            if glyph_backend {
                let root = GlyphBackend(bitmap).into_drawing_area();
                root.draw_text(text, &style, (10, 5)).unwrap();
                root.present().unwrap();
            } else {
                let root = bitmap.into_drawing_area();
                root.draw_text(text, &style, (10, 5)).unwrap();
                root.present().unwrap();
            }
        }
        rgb
    }

    /// The runs of blank columns between the first and the last inked column.
    fn gaps(cols: &[bool]) -> Vec<usize> {
        let first = cols.iter().position(|&c| c).unwrap();
        let last = cols.iter().rposition(|&c| c).unwrap();
        cols[first..=last]
            .split(|&c| c)
            .map(|gap| gap.len())
            .filter(|&n| n > 0)
            .collect()
    }

    /// In a monospace font the '.' is centred in its cell. Drawn without its bearing, it
    /// touches the '0' and leaves a wide gap before the '8'; drawn right, the gaps either
    /// side of it are within a pixel or two of each other.
    #[test]
    fn a_narrow_glyph_sits_centred_in_its_cell() {
        let fixed = gaps(&inked_columns(&draw("0.8", true), 200, 40));
        let plain = gaps(&inked_columns(&draw("0.8", false), 200, 40));
        assert_eq!(fixed.len(), 2, "{fixed:?}");
        assert!(
            fixed[0].abs_diff(fixed[1]) <= 2,
            "gaps around the '.': {fixed:?}"
        );
        // plotters' own drawing shows what this fixes.
        assert!(
            plain.len() < 2 || plain[1] > plain[0] + 4,
            "plotters' gaps: {plain:?}"
        );
    }

    /// Text keeps the box plotters laid out for it: same first column for a glyph without
    /// side bearing to speak of, the same overall extent.
    #[test]
    fn text_stays_in_its_layout_box() {
        let cols = inked_columns(&draw("0.8 Mbit/s", true), 200, 40);
        let first = cols.iter().position(|&c| c).unwrap();
        let last = cols.iter().rposition(|&c| c).unwrap();
        let width = advance_width("0.8 Mbit/s", 30.0);
        assert!(first >= 10, "{first}");
        assert!((last as f32) < 10.0 + width + 1.0, "{last} vs {width}");
    }
}
