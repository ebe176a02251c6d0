//! A PNG chart of a simulation run, drawn directly into an indexed-colour bitmap: no plotting,
//! image or font stack, only zlib for the PNG data stream. Text-free by design; docs/scaling.md
//! carries the legend.
//!
//! Top panel: clients wanted (black), each node's connections (one colour per node), the
//! scale-up (red) and scale-down (blue) thresholds; light grid lines at every STEP clients and
//! every hour. Bottom band: nodes in service (green) and booting (grey), one pixel row per
//! 1/max of the group.

use crate::sim::Report;

const W: usize = 960;
const H: usize = 540;
const PLOT_TOP: usize = 10;
const PLOT_BOTTOM: usize = 440;
const BAND_TOP: usize = 460;
const BAND_BOTTOM: usize = 530;
const LEFT: usize = 10;
const RIGHT: usize = W - 10;

// Palette indices.
const WHITE: u8 = 0;
const GRID: u8 = 1;
const BLACK: u8 = 2;
const RED: u8 = 3;
const BLUE: u8 = 4;
const GREEN: u8 = 5;
const GREY: u8 = 6;
const NODE0: u8 = 7;

const PALETTE: [[u8; 3]; 17] = [
    [255, 255, 255],
    [228, 228, 228],
    [0, 0, 0],
    [214, 39, 40],
    [31, 119, 180],
    [44, 160, 44],
    [170, 170, 170],
    // Node colours (cycled).
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [188, 189, 34],
    [23, 190, 207],
    [127, 127, 127],
    [255, 187, 120],
    [152, 223, 138],
    [197, 176, 213],
];

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas {
            px: vec![WHITE; W * H],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: u8) {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            self.px[y as usize * W + x as usize] = c;
        }
    }

    /// A line `thick` pixels wide (Bresenham, thickened downwards and rightwards).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: u8, thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for i in 0..thick {
                for j in 0..thick {
                    self.set(x + i, y + j, c);
                }
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
}

/// Renders `report` as a PNG; `step` spaces the horizontal grid, `max_nodes` scales the band.
pub fn render(report: &Report, step: u64, max_nodes: u32) -> Vec<u8> {
    let mut c = Canvas::new();
    let samples = &report.samples;
    let t_end = samples.last().map(|s| s.t).unwrap_or(0).max(1) as f64;
    let peak = samples.iter().map(|s| s.load).max().unwrap_or(0).max(1);
    let step = step.max(1);
    let y_max = (peak.div_ceil(step) + 1) * step;
    let x_of = |t: u64| LEFT as i64 + ((RIGHT - LEFT) as f64 * t as f64 / t_end) as i64;
    let y_of = |v: f64| {
        let v = v.clamp(0.0, y_max as f64);
        PLOT_BOTTOM as i64 - ((PLOT_BOTTOM - PLOT_TOP) as f64 * v / y_max as f64) as i64
    };

    // Grid.
    for k in 0..=(y_max / step) {
        let y = y_of((k * step) as f64);
        c.line((LEFT as i64, y), (RIGHT as i64, y), GRID, 1);
    }
    for h in 0..=(t_end as u64 / 3600) {
        let x = x_of(h * 3600);
        c.line((x, PLOT_TOP as i64), (x, BAND_BOTTOM as i64), GRID, 1);
    }

    // Series, as polylines between consecutive samples.
    for pair in samples.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (xa, xb) = (x_of(a.t), x_of(b.t));
        // Thresholds as steps.
        for (va, vb, col) in [
            (a.thresholds.up, b.thresholds.up, RED),
            (a.thresholds.down, b.thresholds.down, BLUE),
        ] {
            c.line((xa, y_of(va)), (xb, y_of(va)), col, 1);
            c.line((xb, y_of(va)), (xb, y_of(vb)), col, 1);
        }
        for &(id, conns) in &b.conns {
            let col = NODE0 + ((id - 1) % (PALETTE.len() as u32 - NODE0 as u32)) as u8;
            let prev = a.conns.iter().find(|p| p.0 == id).map(|p| p.1).unwrap_or(0);
            c.line((xa, y_of(prev as f64)), (xb, y_of(conns as f64)), col, 2);
        }
        c.line(
            (xa, y_of(a.load as f64)),
            (xb, y_of(b.load as f64)),
            BLACK,
            2,
        );
    }

    // Node band.
    let per = (BAND_BOTTOM - BAND_TOP) as f64 / f64::from(max_nodes.max(1));
    for pair in samples.windows(2) {
        let s = &pair[0];
        let serving = (s.conns.len() as f64 * per) as i64;
        let booting = (f64::from(s.booting) * per) as i64;
        let base = BAND_BOTTOM as i64;
        for x in x_of(s.t)..=x_of(pair[1].t) {
            c.line((x, base), (x, base - serving), GREEN, 1);
            if booting > 0 {
                c.line((x, base - serving), (x, base - serving - booting), GREY, 1);
            }
        }
    }
    encode(&c)
}

fn encode(c: &Canvas) -> Vec<u8> {
    let mut raw = Vec::with_capacity((W + 1) * H);
    for row in c.px.chunks(W) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(W as u32).to_be_bytes());
    ihdr.extend_from_slice(&(H as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]); // 8-bit indexed colour
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"PLTE", PALETTE.as_flattened());
    chunk(
        &mut png,
        b"IDAT",
        &miniz_oxide::deflate::compress_to_vec_zlib(&raw, 9),
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use crate::sim::{run, SimConfig};

    #[test]
    fn chunks_carry_the_png_crc() {
        // An IEND chunk with no data ends with the same CRC in every PNG file.
        let mut out = Vec::new();
        chunk(&mut out, b"IEND", &[]);
        assert_eq!(&out[8..], &0xAE42_6082u32.to_be_bytes());
    }

    #[test]
    fn renders_a_valid_png() {
        let cfg = SimConfig {
            boot_secs: 120,
            churn_per_hour: 0.1,
            ..SimConfig::paper()
        };
        let png = render(&run(&cfg, &Scenario::Case2.curve()), 50_000, 10);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        // The data stream inflates back to one filter byte plus one index per pixel per row.
        let idat_len = u32::from_be_bytes(png[8 + 25 + 12 + 17 * 3..][..4].try_into().unwrap());
        let idat_start = 8 + 25 + 12 + 17 * 3 + 8;
        let raw = miniz_oxide::inflate::decompress_to_vec_zlib(
            &png[idat_start..idat_start + idat_len as usize],
        )
        .unwrap();
        assert_eq!(raw.len(), (W + 1) * H);
        assert!(raw.contains(&BLACK) && raw.contains(&RED) && raw.contains(&GREEN));
        assert!(png.len() < 100_000, "{} bytes", png.len());
    }
}
