import Foundation

/// An embedded synthetic land-use set: the 21 UC Merced classes drawn procedurally (fields in
/// stripes, water, forest noise, roads, building grids, tanks, courts, …) with random layout,
/// orientation, scale and colour per image. Deterministic by (seed, class, index), any size.
/// It stands in for the real data in the demo and tests; reports say when it was used.
public enum SyntheticLandUse {
    public static let classes = [
        "agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral", "denseresidential",
        "forest", "freeway", "golfcourse", "harbor", "intersection", "mediumresidential", "mobilehomepark",
        "overpass", "parkinglot", "river", "runway", "sparseresidential", "storagetanks", "tenniscourt",
    ]

    /// A disjoint source task for synthetic pretraining: generic textures, none of them land use.
    public static let sourceClasses = [
        "checkerboard", "diagonal-stripes", "dots", "rings", "gradient", "blobs", "zigzag", "crosshatch", "fine-noise", "coarse-noise",
    ]

    public static func dataset(perClass: Int, size: Int, seed: UInt64, source: Bool = false) -> ImageDataset {
        let names = source ? sourceClasses : classes
        let samples = names.indices.flatMap { label in (0..<perClass).map { ImageDataset.Sample(id: "\(names[label])/\($0)", label: label) }
        }
        return ImageDataset(name: source ? "synthetic-textures" : "synthetic-landuse", classes: names, samples: samples, isSynthetic: true)
        { sample in
            let index = Int(sample.id.split(separator: "/").last!)!
            return render(label: sample.label, index: index, size: size, seed: seed, source: source)
        }
    }

    public static func render(label: Int, index: Int, size: Int, seed: UInt64, source: Bool = false) -> RGBImage {
        var c = Canvas(size: size, seed: seed &* 0x100_0000_01b3 ^ UInt64(label) << 40 ^ UInt64(index) ^ (source ? 0xABCD << 48 : 0))
        if source { drawTexture(label, &c) } else { drawLandUse(label, &c) }
        c.finish()
        return RGBImage(width: size, height: size, pixels: c.pixels.map { UInt8(($0 * 255).rounded()) })
    }

    static let grass: Canvas.Color = (0.35, 0.50, 0.25), soil: Canvas.Color = (0.55, 0.45, 0.32), asphalt: Canvas.Color = (0.42, 0.42, 0.43)
    static let water: Canvas.Color = (0.15, 0.30, 0.45), sand: Canvas.Color = (0.85, 0.78, 0.60), white: Canvas.Color = (0.92, 0.92, 0.90)
    static let roof: Canvas.Color = (0.60, 0.35, 0.30), concrete: Canvas.Color = (0.70, 0.70, 0.68), tree: Canvas.Color = (0.15, 0.30, 0.15)

    static func drawLandUse(_ label: Int, _ c: inout Canvas) {
        let s = Double(c.size), angle = c.uniform(0, .pi)
        switch classes[label] {
        case "agricultural":
            c.fillNoise(c.jitter(soil), amplitude: 0.05, cell: s / 4)
            c.stripes(angle: angle, period: s / c.uniform(5, 12), c.jitter(grass), c.jitter(soil), duty: c.uniform(0.3, 0.7))
        case "airplane":
            c.fillNoise(c.jitter(concrete), amplitude: 0.05, cell: s / 6)
            let (cx, cy, l) = (c.uniform(0.35, 0.65) * s, c.uniform(0.35, 0.65) * s, c.uniform(0.3, 0.45) * s)
            c.line(cx - cos(angle) * l, cy - sin(angle) * l, cx + cos(angle) * l, cy + sin(angle) * l, width: s * 0.06, white)
            c.line(
                cx - cos(angle + .pi / 2) * l * 0.8, cy - sin(angle + .pi / 2) * l * 0.8,
                cx + cos(angle + .pi / 2) * l * 0.8, cy + sin(angle + .pi / 2) * l * 0.8, width: s * 0.05, white)
        case "baseballdiamond":
            c.fillNoise(c.jitter(grass), amplitude: 0.05, cell: s / 5)
            let (cx, cy) = (c.uniform(0.4, 0.6) * s, c.uniform(0.4, 0.6) * s)
            c.disk(cx, cy, s * 0.3, c.jitter(soil))
            c.disk(cx, cy, s * 0.14, c.jitter(grass))
            c.line(cx, cy + s * 0.3, cx + s * 0.3, cy, width: 1.5, white)
            c.line(cx, cy + s * 0.3, cx - s * 0.3, cy, width: 1.5, white)
        case "beach":
            c.fillNoise(c.jitter(sand), amplitude: 0.04, cell: s / 8)
            let (sn, cs, edge) = (sin(angle), cos(angle), c.uniform(-0.15, 0.15) * s)
            for y in 0..<c.size {
                for x in 0..<c.size where (Double(x) - s / 2) * cs + (Double(y) - s / 2) * sn + 3 * sin(Double(x + y) / 4) > edge {
                    c.set(x, y, water)
                }
            }
        case "buildings":
            c.fillNoise(c.jitter(asphalt), amplitude: 0.04, cell: s / 6)
            for _ in 0..<Int(c.uniform(3, 6)) {
                c.rect(
                    c.uniform(0, 0.7) * s, c.uniform(0, 0.7) * s, c.uniform(0.2, 0.4) * s, c.uniform(0.2, 0.4) * s, c.jitter(concrete, 0.15)
                )
            }
        case "chaparral":
            c.fillNoise(c.jitter((0.55, 0.50, 0.38)), amplitude: 0.12, cell: s / 10)
            for _ in 0..<Int(s / 3) { c.disk(c.uniform(0, s), c.uniform(0, s), c.uniform(1, s / 24 + 1), c.jitter((0.30, 0.35, 0.22))) }
        case "denseresidential":
            c.fillNoise(c.jitter(asphalt), amplitude: 0.03, cell: s / 6)
            let step = s / c.uniform(6, 9)
            for gy in stride(from: 0.0, to: s, by: step) {
                for gx in stride(from: 0.0, to: s, by: step) {
                    c.rect(gx + 1, gy + 1, step * 0.75, step * 0.6, c.jitter(roof, 0.12))
                }
            }
        case "forest":
            c.fillNoise(c.jitter(tree), amplitude: 0.08, cell: s / 16)
            for _ in 0..<Int(s) { c.disk(c.uniform(0, s), c.uniform(0, s), c.uniform(1, s / 16 + 1), c.jitter((0.12, 0.25, 0.12), 0.04)) }
        case "freeway":
            c.fillNoise(c.jitter(grass), amplitude: 0.06, cell: s / 6)
            c.road(s / 2, s / 2, angle: angle, width: s * 0.35, c.jitter(asphalt))
            c.road(s / 2, s / 2, angle: angle, width: s * 0.03, concrete)
        case "golfcourse":
            c.fillNoise(c.jitter((0.30, 0.55, 0.28)), amplitude: 0.06, cell: s / 5)
            for _ in 0..<3 { c.disk(c.uniform(0, s), c.uniform(0, s), c.uniform(0.1, 0.2) * s, c.jitter((0.45, 0.68, 0.35))) }
            for _ in 0..<2 { c.disk(c.uniform(0, s), c.uniform(0, s), c.uniform(0.03, 0.06) * s, sand) }
        case "harbor":
            c.fillNoise(c.jitter(water), amplitude: 0.03, cell: s / 8)
            let step = s / c.uniform(5, 8)
            for gy in stride(from: step / 2, to: s, by: step) {
                c.line(0, gy, s, gy, width: 1.5, concrete)
                for gx in stride(from: 2.0, to: s, by: step / 2) { c.rect(gx, gy + 2, step * 0.15, step * 0.3, white) }
            }
        case "intersection":
            c.fillNoise(c.jitter(grass), amplitude: 0.06, cell: s / 6)
            let (cx, cy) = (c.uniform(0.35, 0.65) * s, c.uniform(0.35, 0.65) * s)
            c.road(cx, cy, angle: angle, width: s * 0.18, c.jitter(asphalt))
            c.road(cx, cy, angle: angle + .pi / 2, width: s * 0.18, c.jitter(asphalt))
        case "mediumresidential":
            c.fillNoise(c.jitter(grass), amplitude: 0.06, cell: s / 6)
            c.road(s / 2, s / 2, angle: angle, width: s * 0.08, asphalt)
            let step = s / c.uniform(4, 6)
            for gy in stride(from: 0.0, to: s, by: step) {
                for gx in stride(from: 0.0, to: s, by: step) where c.uniform() < 0.7 {
                    c.rect(gx + 2, gy + 2, step * 0.5, step * 0.45, c.jitter(roof, 0.15))
                }
            }
        case "mobilehomepark":
            c.fillNoise(c.jitter(asphalt), amplitude: 0.04, cell: s / 6)
            let step = s / c.uniform(7, 10)
            for gy in stride(from: 0.0, to: s, by: step) {
                for gx in stride(from: 0.0, to: s, by: step * 0.5) {
                    c.rect(gx + 1, gy + 1, step * 0.3, step * 0.75, c.jitter(white, 0.05))
                }
            }
        case "overpass":
            c.fillNoise(c.jitter(grass), amplitude: 0.06, cell: s / 6)
            c.road(s / 2, s / 2, angle: angle, width: s * 0.2, c.jitter(asphalt))
            c.road(s / 2 + 3, s / 2 + 3, angle: angle + c.uniform(0.5, 1.2), width: s * 0.2, (0.15, 0.15, 0.15))
            c.road(s / 2, s / 2, angle: angle + c.uniform(0.5, 1.2), width: s * 0.16, c.jitter(concrete))
        case "parkinglot":
            c.fillNoise(c.jitter(asphalt), amplitude: 0.03, cell: s / 8)
            c.stripes(angle: 0, period: s / c.uniform(6, 10), white, asphalt, duty: 0.08, alpha: 0.8)
            for _ in 0..<Int(s / 2) { c.rect(c.uniform(0, s), c.uniform(0, s), 2, 3, c.jitter((0.5, 0.3, 0.3), 0.3)) }
        case "river":
            c.fillNoise(c.jitter(grass), amplitude: 0.07, cell: s / 6)
            let (phase, amp, width) = (c.uniform(0, 6.28), c.uniform(0.05, 0.2) * s, c.uniform(0.12, 0.25) * s)
            for y in 0..<c.size {
                for x in 0..<c.size where abs(Double(x) - s / 2 - amp * sin(Double(y) / s * 6.28 + phase)) < width / 2 {
                    c.set(x, y, water)
                }
            }
        case "runway":
            c.fillNoise(c.jitter(grass), amplitude: 0.05, cell: s / 6)
            c.road(s / 2, s / 2, angle: angle, width: s * 0.3, c.jitter(asphalt, 0.03))
            for k in -4...4 {
                let t = Double(k) * s * 0.12
                c.line(
                    s / 2 + cos(angle) * t, s / 2 + sin(angle) * t, s / 2 + cos(angle) * (t + s * 0.05),
                    s / 2 + sin(angle) * (t + s * 0.05), width: s * 0.025, white)
            }
        case "sparseresidential":
            c.fillNoise(c.jitter(grass), amplitude: 0.07, cell: s / 6)
            for _ in 0..<Int(c.uniform(2, 5)) {
                c.rect(c.uniform(0, 0.85) * s, c.uniform(0, 0.85) * s, s * 0.12, s * 0.1, c.jitter(roof, 0.15))
            }
            for _ in 0..<Int(s / 6) { c.disk(c.uniform(0, s), c.uniform(0, s), c.uniform(1, 3), tree) }
        case "storagetanks":
            c.fillNoise(c.jitter(soil), amplitude: 0.05, cell: s / 6)
            for _ in 0..<Int(c.uniform(2, 6)) {
                c.disk(c.uniform(0.15, 0.85) * s, c.uniform(0.15, 0.85) * s, c.uniform(0.07, 0.14) * s, c.jitter(white, 0.04))
            }
        default:  // tenniscourt
            c.fillNoise(c.jitter(grass), amplitude: 0.05, cell: s / 6)
            let (x0, y0, w, h) = (c.uniform(0.15, 0.35) * s, c.uniform(0.15, 0.35) * s, c.uniform(0.35, 0.5) * s, c.uniform(0.3, 0.45) * s)
            c.rect(x0, y0, w, h, c.jitter((0.30, 0.45, 0.55), 0.08))
            c.line(x0, y0 + h / 2, x0 + w, y0 + h / 2, width: 1.2, white)
            c.line(x0 + w / 2, y0, x0 + w / 2, y0 + h, width: 1.2, white)
        }
    }

    static func drawTexture(_ label: Int, _ c: inout Canvas) {
        let s = Double(c.size)
        let a: Canvas.Color = (Float(c.uniform(0.2, 0.8)), Float(c.uniform(0.2, 0.8)), Float(c.uniform(0.2, 0.8)))
        let b: Canvas.Color = (Float(c.uniform(0.2, 0.8)), Float(c.uniform(0.2, 0.8)), Float(c.uniform(0.2, 0.8)))
        c.fillNoise(a, amplitude: 0.02, cell: s / 4)
        switch label {
        case 0: c.stripes(angle: 0, period: s / 6, a, b); c.stripes(angle: .pi / 2, period: s / 6, a, b, alpha: 0.5)
        case 1: c.stripes(angle: .pi / 4 + c.uniform(-0.2, 0.2), period: s / c.uniform(4, 10), a, b)
        case 2: for _ in 0..<Int(s / 3) { c.disk(c.uniform(0, s), c.uniform(0, s), s * 0.04, b) }
        case 3: for r in stride(from: s * 0.7, to: 1, by: -s * 0.1) { c.disk(s / 2, s / 2, r, Int(r / (s * 0.1)) % 2 == 0 ? a : b) }
        case 4: for y in 0..<c.size { for x in 0..<c.size { c.set(x, y, b, alpha: Float(x) / Float(s)) } }
        case 5: c.fillNoise(b, amplitude: 0.25, cell: s / 3)
        case 6:
            for k in stride(from: 0.0, to: s, by: s / 8) {
                c.line(0, k, s / 2, k + s / 10, width: 2, b); c.line(s / 2, k + s / 10, s, k, width: 2, b)
            }
        case 7:
            c.stripes(angle: .pi / 4, period: s / 8, b, a, duty: 0.2);
            c.stripes(angle: -.pi / 4, period: s / 8, b, a, duty: 0.2, alpha: 0.6)
        case 8: c.fillNoise(b, amplitude: 0.3, cell: 1.5)
        default: c.fillNoise(b, amplitude: 0.3, cell: s / 2)
        }
    }
}
