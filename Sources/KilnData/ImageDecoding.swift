import CImageCodecs
import Foundation
import Kiln

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC).
public struct RGBImage: Sendable {
    public let width: Int
    public let height: Int
    public let pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "\(pixels.count) bytes for a \(width)x\(height) RGB image")
        (self.width, self.height, self.pixels) = (width, height, pixels)
    }
}

/// A file that is not a decodable RGB image; names the file.
public struct ImageError: Error, CustomStringConvertible {
    public let file: String
    public let detail: String
    public var description: String { "\(file): \(detail)" }
}

public enum ImageDecoder {
    public static let extensions: Set<String> = ["jpg", "jpeg", "png", "tif", "tiff"]

    /// Decodes JPEG, PNG or TIFF, chosen by the file's signature (not its extension).
    public static func decode(_ url: URL) throws -> RGBImage {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ImageError(file: url.path, detail: "cannot read: \(error.localizedDescription)")
        }
        return try decode(data, file: url.path)
    }

    /// Decodes an image held in memory (TIFF goes through a temporary file: libtiff reads files).
    public static func decode(_ data: Data, file: String) throws -> RGBImage {
        var image = kn_image()
        let bytes = [UInt8](data)
        let status: Int32
        let limit = Int64(LoadLimits.maxImagePixels)
        if bytes.starts(with: [0xFF, 0xD8]) {
            status = kn_decode_jpeg(bytes, bytes.count, limit, &image)
        } else if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) {
            status = kn_decode_png(bytes, bytes.count, limit, &image)
        } else if bytes.starts(with: [0x49, 0x49, 0x2A, 0x00]) || bytes.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) {
            status = try withFile(data, at: file) { kn_decode_tiff($0, limit, &image) }
        } else {
            throw ImageError(file: file, detail: "not a JPEG, PNG or TIFF file")
        }
        guard status == 0 else {
            let message = withUnsafeBytes(of: image.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw ImageError(file: file, detail: message.isEmpty ? "cannot decode" : message)
        }
        defer { kn_image_free(&image) }
        let count = Int(image.width) * Int(image.height) * 3
        return RGBImage(
            width: Int(image.width), height: Int(image.height), pixels: Array(UnsafeBufferPointer(start: image.rgb, count: count)))
    }

    /// Runs `body` on a path holding `data`: `file` itself when it exists, else a temporary copy.
    static func withFile(_ data: Data, at file: String, _ body: (String) -> Int32) throws -> Int32 {
        if FileManager.default.fileExists(atPath: file) { return body(file) }
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-image-\(UUID()).tif")
        do { try data.write(to: temporary) } catch {
            throw ImageError(file: file, detail: "cannot stage for libtiff: \(error.localizedDescription)")
        }
        defer { try? FileManager.default.removeItem(at: temporary) }
        return body(temporary.path)
    }

    public enum Format: String, Sendable { case jpeg, png, tiff }

    /// Writes an image (test data, synthetic sets).
    public static func write(_ image: RGBImage, to url: URL, format: Format, quality: Int = 90) throws {
        var error = [CChar](repeating: 0, count: 256)
        let status: Int32 = image.pixels.withUnsafeBufferPointer { px in
            switch format {
            case .jpeg: kn_encode_jpeg(url.path, px.baseAddress, Int32(image.width), Int32(image.height), Int32(quality), &error)
            case .png: kn_encode_png(url.path, px.baseAddress, Int32(image.width), Int32(image.height), &error)
            case .tiff: kn_encode_tiff(url.path, px.baseAddress, Int32(image.width), Int32(image.height), &error)
            }
        }
        guard status == 0 else {
            throw ImageError(
                file: url.path, detail: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }
}
