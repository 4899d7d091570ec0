import Foundation

/// NumPy's .npy format (versions 1–3): little-endian float32/float64/int32/int64, C order.
/// float64 and int32 are converted on read (to float32 and int64); writes are float32 or int64.
public enum NPY {
    public static func read(_ url: URL) throws -> Tensor {
        try decode(contents(of: url), file: url.path)
    }

    /// The file's bytes, or an `NPYError` naming it.
    public static func contents(of url: URL) throws -> Data {
        do { return try Data(contentsOf: url) } catch {
            throw NPYError(file: url.path, detail: "cannot read: \(error.localizedDescription)")
        }
    }

    public static func decode(_ data: Data, file: String = "<memory>") throws -> Tensor {
        try data.withUnsafeBytes { try decode($0, file: file) }
    }

    /// Decodes a .npy held in memory; every size in its header is checked against the bytes present.
    public static func decode(_ bytes: UnsafeRawBufferPointer, file: String = "<memory>") throws -> Tensor {
        let sizes = HostileSizes(file: file) { NPYError(file: file, detail: $0) }
        func fail(_ detail: String) -> Error { sizes.fail(detail) }
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw fail("not a .npy file (bad magic)")
        }
        let major = bytes[6]
        let headerStart = major == 1 ? 10 : 12
        guard major >= 1 && major <= 3, bytes.count >= headerStart else { throw fail("unsupported .npy version \(major)") }
        let headerLength =
            major == 1
            ? Int(bytes[8]) | Int(bytes[9]) << 8
            : Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
        guard bytes.count - headerStart >= headerLength else { throw fail("header of \(headerLength) bytes runs past the end of the file") }
        guard let header = String(bytes: bytes[headerStart..<headerStart + headerLength], encoding: .utf8) else {
            throw fail("header is not text")
        }
        let descr = try field("descr", in: header, file: file)
        guard try field("fortran_order", in: header, file: file) == "False" else { throw fail("Fortran-order arrays are not supported") }
        let shapeText = try field("shape", in: header, file: file)
        let dims = try shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .map { (s: String) -> Int in
                guard let d = Int(s), d >= 0 else { throw fail("bad shape \(shapeText)") }
                return d
            }
        let payload = headerStart + headerLength
        let width: Int
        switch descr {
        case "'<f4'", "'<i4'": width = 4
        case "'<f8'", "'<i8'": width = 8
        default: throw fail("unsupported dtype \(descr) (expected <f4, <f8, <i4 or <i8)")
        }
        let (shape, needed) = try sizes.shape(dims, width: width, "shape \(shapeText) of \(descr)")
        guard bytes.count - payload >= needed else {
            throw fail("data holds \(bytes.count - payload) bytes, shape \(shape) of \(descr) needs \(needed)")
        }
        let isFloat = descr == "'<f4'" || descr == "'<f8'"
        let t = try sizes.tensor(shape, dtype: isFloat ? .float32 : .int64, "shape \(shape)")
        let src = bytes.baseAddress!.advanced(by: payload)
        switch descr {
        case "'<f4'": t.data.copyMemory(from: src, byteCount: needed)
        case "'<f8'": for i in 0..<shape.count { t.floats[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case "'<i8'": t.data.copyMemory(from: src, byteCount: needed)
        default: for i in 0..<shape.count { t.int64s[i] = Int64(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        }
        return t
    }

    /// Reads float64 data without rounding to float32 (reference values in tests).
    public static func readDoubles(_ url: URL) throws -> (shape: Shape, values: [Double]) {
        try decodeDoubles(contents(of: url), file: url.path)
    }

    /// The values in float64: `<f8` data without rounding to float32, other dtypes widened.
    public static func decodeDoubles(_ data: Data, file: String = "<memory>") throws -> (shape: Shape, values: [Double]) {
        let t = try decode(data, file: file)
        // The header follows the magic's non-ASCII 0x93 byte, so decode leniently.
        guard String(decoding: data.prefix(128), as: UTF8.self).contains("'<f8'") else {
            return (t.shape, t.scalars.map(Double.init))
        }
        let payload = data.count - t.count * 8
        let values = data.withUnsafeBytes { raw in
            (0..<t.count).map { raw.loadUnaligned(fromByteOffset: payload + 8 * $0, as: Double.self) }
        }
        return (t.shape, values)
    }

    public static func encode(_ tensor: Tensor) -> Data {
        let descr = tensor.dtype == .float32 ? "<f4" : "<i8"
        let dims = tensor.shape.dims.map(String.init)
        let shape = dims.count == 1 ? "(\(dims[0]),)" : "(" + dims.joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xff), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        data.append(Data(bytes: tensor.data, count: tensor.byteCount))
        return data
    }

    /// Writes atomically (temporary file + rename): a failed write never leaves half a file.
    public static func write(_ tensor: Tensor, to url: URL) throws {
        do { try encode(tensor).writeAtomically(to: url) } catch {
            throw NPYError(file: url.path, detail: "cannot write: \(error.localizedDescription)")
        }
    }

    private static func field(_ key: String, in header: String, file: String) throws -> String {
        guard let keyRange = header.range(of: "'\(key)':") else { throw NPYError(file: file, detail: "header has no '\(key)'") }
        var rest = header[keyRange.upperBound...].drop { $0 == " " }
        if rest.first == "(" {
            guard let close = rest.firstIndex(of: ")") else { throw NPYError(file: file, detail: "unterminated shape") }
            return String(rest[...close])
        }
        if let end = rest.firstIndex(where: { $0 == "," || $0 == "}" }) { rest = rest[..<end] }
        return rest.trimmingCharacters(in: .whitespaces)
    }
}

public struct NPYError: Error, CustomStringConvertible {
    public let file: String
    public let detail: String
    public var description: String { "\(file): \(detail)" }
}
