//! The one font every Surge plot is set in: DejaVu Sans cut to printable
//! ASCII plus µ (23 KB, licence in `assets/`), carried inside the binary so
//! plots never depend on the fonts a machine has.
//!
//! plotters draws text through `ab_glyph`, which needs a registered font
//! even for SVG. Cargo unifies features across a build, so once any crate
//! turns `ab_glyph` on, every crate that draws text must register one:
//! hence this crate, which each plotting crate calls before drawing.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

/// The family to name in plotters text styles.
pub const FONT_FAMILY: &str = "sans-serif";

const FONT_TTF: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");

/// Registers the bundled font as `FONT_FAMILY`, once per process.
pub fn register() -> Result<(), FontError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered =
        REGISTERED.get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, FONT_TTF).is_ok());
    if *registered {
        Ok(())
    } else {
        Err(FontError)
    }
}

/// The bundled font did not parse (a broken build, not bad input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FontError;

impl std::fmt::Display for FontError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the bundled plot font does not parse")
    }
}

impl std::error::Error for FontError {}

#[cfg(test)]
mod tests {
    use plotters::prelude::*;

    use super::*;

    #[test]
    fn text_renders_in_the_bundled_font() {
        register().expect("font registers");
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (200, 50)).into_drawing_area();
            root.draw_text("p99 µs", &(FONT_FAMILY, 14).into_text_style(&root), (5, 5))
                .expect("text draws");
        }
        assert!(svg.contains("p99 µs"), "{svg}");
    }
}
