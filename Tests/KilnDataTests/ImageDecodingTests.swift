import Foundation
import Testing
@testable import KilnData

struct ImageDecodingTests {
    static let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/images")

    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-images-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    func gradient(_ w: Int, _ h: Int) -> RGBImage {
        var px: [UInt8] = []
        for y in 0..<h { for x in 0..<w { px += [UInt8(x * 255 / max(w - 1, 1)), UInt8(y * 255 / max(h - 1, 1)), 128] } }
        return RGBImage(width: w, height: h, pixels: px)
    }

    @Test(arguments: [ImageDecoder.Format.png, .tiff, .jpeg])
    func roundTrip(_ format: ImageDecoder.Format) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let image = gradient(24, 16)
        let url = dir.appendingPathComponent("x.\(format.rawValue)")
        try ImageDecoder.write(image, to: url, format: format, quality: 95)
        let back = try ImageDecoder.decode(url)
        #expect(back.width == 24 && back.height == 16)
        let worst = zip(back.pixels, image.pixels).map { abs(Int($0) - Int($1)) }.max()!
        #expect(worst <= (format == .jpeg ? 12 : 0), "\(format): max pixel difference \(worst)")
    }

    @Test func grayscaleAndAlphaAreConvertedCMYKIsRefused() throws {
        for name in ["gray.png", "gray.jpg"] {
            let image = try ImageDecoder.decode(Self.samples.appendingPathComponent(name))
            #expect(image.width == 8 && image.pixels.count == 8 * 8 * 3)
            #expect(image.pixels[0] == image.pixels[1] && image.pixels[1] == image.pixels[2], "\(name): gray expands to equal RGB")
        }
        let rgba = try ImageDecoder.decode(Self.samples.appendingPathComponent("rgba.png"))
        #expect(Array(rgba.pixels[0..<3]) == [200, 0, 0])
        #expect(Array(rgba.pixels[(7 * 8 * 3)..<(7 * 8 * 3 + 3)]) == [0, 0, 0])  // transparent over black
        do {
            _ = try ImageDecoder.decode(Self.samples.appendingPathComponent("cmyk.jpg"))
            Issue.record("decoded a CMYK JPEG")
        } catch let error as ImageError {
            #expect(error.description.contains("cmyk.jpg") && error.description.contains("CMYK"))
        }
    }

    @Test(arguments: [ImageDecoder.Format.jpeg, .png, .tiff])
    func truncatedFilesAreErrorsNamingTheFile(_ format: ImageDecoder.Format) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("broken.\(format.rawValue)")
        try ImageDecoder.write(gradient(64, 64), to: url, format: format, quality: 90)
        let data = try Data(contentsOf: url)
        try data.prefix(data.count / 2).write(to: url)
        do {
            _ = try ImageDecoder.decode(url)
            Issue.record("decoded a truncated \(format)")
        } catch let error as ImageError {
            #expect(error.file == url.path)
        }
        try Data("not an image".utf8).write(to: url)
        #expect(throws: ImageError.self) { try ImageDecoder.decode(url) }
    }
}

struct TransformTests {
    func image(_ w: Int, _ h: Int, _ f: (Int, Int) -> Float) -> FloatImage {
        var px: [Float] = []
        for y in 0..<h { for x in 0..<w { let v = f(x, y); px += [v, v, v] } }
        return FloatImage(width: w, height: h, pixels: px)
    }

    @Test func resizeIsAntialiasedAndKeepsConstants() {
        var rng = SplitMix(seed: 0)
        let constant = Transform.resizeTo(width: 7, height: 5).apply(image(32, 20) { _, _ in 0.25 }, rng: &rng)
        #expect(constant.pixels.allSatisfy { abs($0 - 0.25) < 1e-5 })
        // A 1-pixel checkerboard shrunk 4× averages to grey instead of aliasing.
        let checker = Transform.resizeTo(width: 8, height: 8).apply(image(32, 32) { x, y in Float((x + y) % 2) }, rng: &rng)
        #expect(checker.pixels.allSatisfy { abs($0 - 0.5) < 0.08 })
        let shorter = Transform.resize(16).apply(image(40, 20) { _, _ in 1 }, rng: &rng)
        #expect(shorter.width == 32 && shorter.height == 16)
    }

    @Test func cropsFlipsAndRotations() {
        var rng = SplitMix(seed: 3)
        let src = image(4, 3) { x, y in Float(10 * y + x) }
        let crop = Transform.centerCrop(2).apply(src, rng: &rng)
        #expect(crop.pixels.enumerated().filter { $0.offset % 3 == 0 }.map(\.element) == [1, 2, 11, 12])
        var seen = Set<[Float]>()
        for _ in 0..<40 {
            let r = Transform.randomRotation90.apply(src, rng: &rng)
            #expect(r.pixels.count == src.pixels.count)
            #expect(Set(r.pixels) == Set(src.pixels))
            seen.insert(r.pixels)
        }
        #expect(seen.count == 4)
        let flipped = Transform.randomHorizontalFlip.apply(Transform.randomHorizontalFlip.apply(src, rng: &rng), rng: &rng)
        #expect(Set(flipped.pixels) == Set(src.pixels))
        let normalized = Transform.normalize(mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]).apply(image(1, 1) { _, _ in 1 }, rng: &rng)
        #expect(normalized.pixels == [1, 1, 1])
    }
}
