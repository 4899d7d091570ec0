import Foundation

/// A tiny raster canvas for procedural aerial-like scenes (float RGB in [0, 1], HWC).
struct Canvas {
    let size: Int
    var pixels: [Float]
    var rng: SplitMix

    init(size: Int, seed: UInt64) {
        self.size = size
        pixels = [Float](repeating: 0, count: size * size * 3)
        rng = SplitMix(seed: seed)
    }

    typealias Color = (Float, Float, Float)

    mutating func uniform(_ lo: Double = 0, _ hi: Double = 1) -> Double {
        lo + (hi - lo) * Double(rng.next() >> 11) / Double(1 << 53)
    }

    /// The color with each channel jittered by ±amount.
    mutating func jitter(_ c: Color, _ amount: Double = 0.06) -> Color {
        (c.0 + Float(uniform(-amount, amount)), c.1 + Float(uniform(-amount, amount)), c.2 + Float(uniform(-amount, amount)))
    }

    mutating func set(_ x: Int, _ y: Int, _ c: Color, alpha: Float = 1) {
        guard x >= 0, y >= 0, x < size, y < size else { return }
        let i = 3 * (y * size + x)
        pixels[i] += alpha * (c.0 - pixels[i])
        pixels[i + 1] += alpha * (c.1 - pixels[i + 1])
        pixels[i + 2] += alpha * (c.2 - pixels[i + 2])
    }

    /// Base color modulated by smooth value noise with cells of `cell` pixels.
    mutating func fillNoise(_ c: Color, amplitude: Float, cell: Double) {
        let grid = Int(Double(size) / max(cell, 1)) + 2
        var values = [Float](repeating: 0, count: grid * grid)
        for i in values.indices { values[i] = Float(uniform(-1, 1)) }
        for y in 0..<size {
            for x in 0..<size {
                let gx = Double(x) / max(cell, 1), gy = Double(y) / max(cell, 1)
                let x0 = Int(gx), y0 = Int(gy), fx = Float(gx - Double(x0)), fy = Float(gy - Double(y0))
                let v00 = values[y0 * grid + x0], v10 = values[y0 * grid + x0 + 1]
                let v01 = values[(y0 + 1) * grid + x0], v11 = values[(y0 + 1) * grid + x0 + 1]
                let v = (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy
                let i = 3 * (y * size + x)
                pixels[i] = c.0 + amplitude * v
                pixels[i + 1] = c.1 + amplitude * v
                pixels[i + 2] = c.2 + amplitude * v
            }
        }
    }

    /// Parallel bands of two colors at an angle (fields, lane markings, water ripples).
    mutating func stripes(angle: Double, period: Double, _ a: Color, _ b: Color, duty: Double = 0.5, alpha: Float = 1) {
        let (s, c) = (sin(angle), cos(angle))
        for y in 0..<size {
            for x in 0..<size {
                let t = (Double(x) * c + Double(y) * s) / period
                set(x, y, t - t.rounded(.down) < duty ? a : b, alpha: alpha)
            }
        }
    }

    mutating func rect(_ x0: Double, _ y0: Double, _ w: Double, _ h: Double, _ c: Color) {
        for y in Int(y0)..<Int(y0 + max(h, 1)) { for x in Int(x0)..<Int(x0 + max(w, 1)) { set(x, y, c) } }
    }

    mutating func disk(_ cx: Double, _ cy: Double, _ r: Double, _ c: Color) {
        for y in Int(cy - r)...Int(cy + r) {
            for x in Int(cx - r)...Int(cx + r) where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) <= r * r {
                set(x, y, c)
            }
        }
    }

    /// A thick segment.
    mutating func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, width: Double, _ c: Color) {
        let (dx, dy) = (x1 - x0, y1 - y0)
        let length2 = max(dx * dx + dy * dy, 1e-9)
        let pad = width + 1
        for y in Int(min(y0, y1) - pad)...Int(max(y0, y1) + pad) {
            for x in Int(min(x0, x1) - pad)...Int(max(x0, x1) + pad) {
                let t = max(0, min(1, ((Double(x) - x0) * dx + (Double(y) - y0) * dy) / length2))
                let (px, py) = (x0 + t * dx - Double(x), y0 + t * dy - Double(y))
                if px * px + py * py <= width * width / 4 { set(x, y, c) }
            }
        }
    }

    /// A line through the whole image at `angle` through (cx, cy).
    mutating func road(_ cx: Double, _ cy: Double, angle: Double, width: Double, _ c: Color) {
        let reach = Double(size) * 1.5
        line(cx - cos(angle) * reach, cy - sin(angle) * reach, cx + cos(angle) * reach, cy + sin(angle) * reach, width: width, c)
    }

    /// Per-pixel sensor noise, then clamp to [0, 1].
    mutating func finish(noise: Double = 0.03) {
        for i in pixels.indices { pixels[i] = min(1, max(0, pixels[i] + Float(uniform(-noise, noise)))) }
    }
}
