import CImageCodecs
import Kiln

/// A float image, HWC, values as decoded / 255 until normalisation.
public struct FloatImage: Sendable {
    public var width: Int
    public var height: Int
    public var pixels: [Float]

    public init(width: Int, height: Int, pixels: [Float]) {
        (self.width, self.height, self.pixels) = (width, height, pixels)
    }

    public init(_ image: RGBImage) {
        self.init(width: image.width, height: image.height, pixels: image.pixels.map { Float($0) / 255 })
    }

    /// Writes the image as CHW into `destination` (one sample of a batch tensor).
    public func writeCHW(to destination: UnsafeMutablePointer<Float>) {
        let plane = width * height
        for i in 0..<plane {
            destination[i] = pixels[3 * i]
            destination[plane + i] = pixels[3 * i + 1]
            destination[2 * plane + i] = pixels[3 * i + 2]
        }
    }
}

/// Image transforms in torchvision's vocabulary, plus the flips and 90° rotations that suit
/// aerial images (no canonical "up").
public enum Transform: Sendable {
    /// Resize so the shorter side is `size` (torchvision Resize(int)), bilinear, antialiased.
    case resize(Int)
    case resizeTo(width: Int, height: Int)
    case centerCrop(Int)
    case randomCrop(Int)
    case randomHorizontalFlip
    case randomVerticalFlip
    /// 0, 90, 180 or 270 degrees, uniformly.
    case randomRotation90
    /// One of the 8 symmetries of the square, fixed: bit 0 flips horizontally, bit 1 vertically,
    /// bit 2 transposes (the finite augmentation set a frozen-feature cache draws from).
    case dihedral(Int)
    /// (x − mean) / std per channel, x in [0, 1].
    case normalize(mean: [Float], std: [Float])
    /// x·2 − 1: [0, 1] → [−1, 1] (the TF.js MobileNetV2's input range).
    case scaleToSymmetricUnit

    public static let imageNetNormalization = Transform.normalize(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])

    public func apply(_ image: FloatImage, rng: inout SplitMix) -> FloatImage {
        switch self {
        case let .resize(size):
            let scale = Double(size) / Double(min(image.width, image.height))
            return resized(
                image, width: max(1, Int((Double(image.width) * scale).rounded())),
                height: max(1, Int((Double(image.height) * scale).rounded())))
        case let .resizeTo(width, height):
            return resized(image, width: width, height: height)
        case let .centerCrop(size):
            return cropped(image, top: (image.height - size) / 2, left: (image.width - size) / 2, size: size)
        case let .randomCrop(size):
            let top = Int(rng.next() % UInt64(max(image.height - size + 1, 1)))
            let left = Int(rng.next() % UInt64(max(image.width - size + 1, 1)))
            return cropped(image, top: top, left: left, size: size)
        case .randomHorizontalFlip:
            return rng.next() & 1 == 0
                ? image : remapped(image, width: image.width, height: image.height) { x, y in (image.width - 1 - x, y) }
        case .randomVerticalFlip:
            return rng.next() & 1 == 0
                ? image : remapped(image, width: image.width, height: image.height) { x, y in (x, image.height - 1 - y) }
        case .randomRotation90:
            switch rng.next() % 4 {
            case 1: return remapped(image, width: image.height, height: image.width) { x, y in (y, image.height - 1 - x) }
            case 2: return remapped(image, width: image.width, height: image.height) { x, y in (image.width - 1 - x, image.height - 1 - y) }
            case 3: return remapped(image, width: image.height, height: image.width) { x, y in (image.width - 1 - y, x) }
            default: return image
            }
        case let .dihedral(k):
            let (w, h) = (image.width, image.height)
            let (outW, outH) = k & 4 != 0 ? (h, w) : (w, h)
            return remapped(image, width: outW, height: outH) { x, y in
                var (sx, sy) = k & 4 != 0 ? (y, x) : (x, y)
                if k & 1 != 0 { sx = w - 1 - sx }
                if k & 2 != 0 { sy = h - 1 - sy }
                return (sx, sy)
            }
        case let .normalize(mean, std):
            var out = image
            for i in 0..<(image.width * image.height) {
                for c in 0..<3 { out.pixels[3 * i + c] = (image.pixels[3 * i + c] - mean[c]) / std[c] }
            }
            return out
        case .scaleToSymmetricUnit:
            var out = image
            for i in out.pixels.indices { out.pixels[i] = image.pixels[i] * 2 - 1 }
            return out
        }
    }

    func resized(_ image: FloatImage, width: Int, height: Int) -> FloatImage {
        if width == image.width && height == image.height { return image }
        var out = [Float](repeating: 0, count: width * height * 3)
        image.pixels.withUnsafeBufferPointer { src in
            kn_resize_bilinear(src.baseAddress, Int32(image.height), Int32(image.width), 3, &out, Int32(height), Int32(width))
        }
        return FloatImage(width: width, height: height, pixels: out)
    }

    /// A size×size window; when the image is smaller, the window is clamped (edge pixels repeat).
    func cropped(_ image: FloatImage, top: Int, left: Int, size: Int) -> FloatImage {
        remapped(image, width: size, height: size) { x, y in
            (min(max(left + x, 0), image.width - 1), min(max(top + y, 0), image.height - 1))
        }
    }

    /// out(x, y) = in(source(x, y)).
    func remapped(_ image: FloatImage, width: Int, height: Int, source: (Int, Int) -> (Int, Int)) -> FloatImage {
        var out = [Float](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let (sx, sy) = source(x, y)
                let s = 3 * (sy * image.width + sx), d = 3 * (y * width + x)
                out[d] = image.pixels[s]
                out[d + 1] = image.pixels[s + 1]
                out[d + 2] = image.pixels[s + 2]
            }
        }
        return FloatImage(width: width, height: height, pixels: out)
    }
}

/// A small, fast, seedable generator (SplitMix64): data order and augmentation are reproducible.
public struct SplitMix: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
