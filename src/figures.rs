//! Figures drawn with plotters: line charts (Figures 3, 4, 5) and image grids (Figure 6). Each
//! picture is drawn in memory and written as a whole, so a figure file is never left half
//! written.

use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

fn draw_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Figure {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Lets a figure that cannot be *drawn* (plotters finds no font, say) pass with a warning on
/// stderr, since the numbers it shows are saved in their own files; every other failure, above
/// all one to *write* the figure file (a full disk), stays an error, so that a command never
/// exits successfully without a file it promises.
pub fn unless_undrawable(result: Result<()>) -> Result<()> {
    match result {
        Err(e @ Error::Figure { .. }) => {
            eprintln!("warning: {e} (the figure is left out; its numbers are saved beside it)");
            Ok(())
        }
        other => other,
    }
}

/// One named line of a chart.
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points (x, y); non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn bounds(series: &[Series]) -> Option<(f64, f64, f64, f64)> {
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return None;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    Some((x0, x1.max(x0 + 1e-9), y0 - pad, y1 + pad))
}

/// An axis tick without trailing zeros: `100`, `0.25`.
fn tick_label(x: f64) -> String {
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Draws a line chart to a PNG file.
pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    let (x0, x1, y0, y1) = bounds(series).ok_or_else(|| draw_error(path, "nothing to plot"))?;
    render_png(path, (800, 560), |root| {
        let err = |e: &dyn std::fmt::Display| draw_error(path, e);
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 24))
            .margin(15)
            .margin_right(30)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| tick_label(*x))
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 16))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(|e| err(&e))?;
        Ok(())
    })
}

/// One cell of an image grid: pixels (C x H x W in [0,1]) with a caption above and below.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cell {
    /// Pixels, channel-major.
    pub pixels: Vec<f32>,
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// Text above the image.
    pub top: String,
    /// Text below the image.
    pub bottom: String,
}

/// Draws rows of images, each row with a label on the left, to a PNG file.
pub fn image_grid(path: &Path, title: &str, rows: &[(String, Vec<Cell>)], scale: usize) -> Result<()> {
    let cols = rows.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
    let [_, h, w] = rows
        .iter()
        .flat_map(|(_, r)| r.first())
        .map(|c| c.shape)
        .next()
        .ok_or_else(|| draw_error(path, "no images to draw"))?;
    let (cw, ch) = (w * scale + 20, h * scale + 50);
    let left = 130;
    let width = (left + cols * cw + 10) as u32;
    let height = (50 + rows.len() * ch) as u32;
    render_png(path, (width, height), |root| {
        let err = |e: &dyn std::fmt::Display| draw_error(path, e);
        root.fill(&WHITE).map_err(|e| err(&e))?;
        root.draw(&Text::new(title.to_string(), (10, 10), ("sans-serif", 22).into_font()))
            .map_err(|e| err(&e))?;
        for (ri, (label, cells)) in rows.iter().enumerate() {
            let y0 = 50 + ri * ch;
            root.draw(&Text::new(
                label.clone(),
                (8, (y0 + ch / 2) as i32),
                ("sans-serif", 16).into_font(),
            ))
            .map_err(|e| err(&e))?;
            for (ci, cell) in cells.iter().enumerate() {
                draw_cell(root, cell, (left + ci * cw, y0), scale).map_err(|e| err(&e))?;
            }
        }
        Ok(())
    })
}

/// Draws one grid cell with its top-left corner at `(x0, y0)`: the caption, the image scaled
/// up `scale` times, and the text below.
fn draw_cell<'a>(
    root: &Canvas<'a>,
    cell: &Cell,
    (x0, y0): (usize, usize),
    scale: usize,
) -> DrawResult<(), BitMapBackend<'a>> {
    let [c, hh, ww] = cell.shape;
    for y in 0..hh {
        for x in 0..ww {
            let v = |ch: usize| (cell.pixels[ch * hh * ww + y * ww + x].clamp(0.0, 1.0) * 255.0).round() as u8;
            let color = if c == 1 {
                RGBColor(v(0), v(0), v(0))
            } else {
                RGBColor(v(0), v(1), v(2))
            };
            let px = (x0 + x * scale) as i32;
            let py = (y0 + 20 + y * scale) as i32;
            root.draw(&Rectangle::new(
                [(px, py), (px + scale as i32, py + scale as i32)],
                color.filled(),
            ))?;
        }
    }
    root.draw(&Text::new(
        cell.top.clone(),
        (x0 as i32, y0 as i32 + 2),
        ("sans-serif", 15).into_font(),
    ))?;
    let below = (y0 + 22 + hh * scale) as i32;
    root.draw(&Text::new(
        cell.bottom.clone(),
        (x0 as i32, below),
        ("sans-serif", 15).into_font(),
    ))
}

/// The drawing surface handed to the code that draws a figure.
type Canvas<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws a `width` x `height` picture with `draw` into memory, then writes it to `path` as a
/// PNG in one piece (see [`write_atomic`]), so that `path` holds either its old content or
/// the complete new picture.
fn render_png(path: &Path, (width, height): (u32, u32), draw: impl FnOnce(&Canvas<'_>) -> Result<()>) -> Result<()> {
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| draw_error(path, e))?;
    }
    let png =
        encode_png(&pixels, (width, height)).map_err(|e| draw_error(path, format!("cannot encode the PNG: {e}")))?;
    Ok(write_atomic(path, &png)?)
}

/// Encodes 8-bit RGB `pixels` of size `width` x `height` as a PNG file's bytes.
fn encode_png(pixels: &[u8], (width, height): (u32, u32)) -> image::ImageResult<Vec<u8>> {
    let mut png = Vec::new();
    PngEncoder::new(&mut png).write_image(pixels, width, height, ExtendedColorType::Rgb8)?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::tick_label;

    #[test]
    fn tick_labels_drop_trailing_zeros() {
        assert_eq!(tick_label(100.0), "100");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(1.5), "1.5");
    }
}
