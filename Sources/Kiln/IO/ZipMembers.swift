import Foundation
import ZIPFoundation

/// Bytes loaded from a file into memory whose allocation failure is an error, not a trap.
public final class LoadedBytes {
    public let count: Int
    let base: UnsafeMutableRawPointer

    init?(count: Int) {
        guard let memory = alignedZeroedMemory(max(count, 1)) else { return nil }
        (self.count, base) = (count, memory)
    }

    deinit { free(base) }

    public var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
    public var array: [UInt8] { Array(buffer) }
}

/// The members of a zip archive (torch checkpoints, .npz), extracted with their sizes checked
/// before anything is allocated: a member must declare no more than deflate can produce from
/// the bytes it occupies, must inflate to exactly what it declared (a zip bomb stops at the
/// declared size), must pass its CRC-32, and all members together stay within
/// `LoadLimits.maxBytes`.
struct ZipMembers {
    /// Deflate's largest expansion: 258 bytes from 2 bits, ~1032:1.
    static let maxDeflateRatio: UInt64 = 1032

    let archive: Archive
    let file: String
    let sizes: HostileSizes
    /// The archive's size on disk: no member's compressed bytes can exceed it.
    let fileBytes: UInt64
    private(set) var extracted = 0

    init(_ url: URL) throws {
        file = url.path
        sizes = .checkpoint(url.path)
        fileBytes = ((try? FileManager.default.attributesOfItem(atPath: url.path)[.size]) as? NSNumber)?.uint64Value ?? 0
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw CheckpointError(file: file, detail: "not a readable zip archive (truncated or damaged): \(error)")
        }
    }

    /// Member paths in directory order.
    var paths: [String] { archive.map(\.path) }

    subscript(path: String) -> Entry? { archive[path] }

    func first(where predicate: (Entry) -> Bool) -> Entry? { archive.first(where: predicate) }

    /// The member's bytes. `expected`, when the caller knows how large the member must be (a
    /// storage of `numel × width` bytes), is checked against the declared size first; `limit`
    /// caps members that are metadata (data.pkl).
    mutating func extract(_ entry: Entry, expected: Int? = nil, limit: Int? = nil) throws -> LoadedBytes {
        let name = "'\(entry.path)'"
        let declared = entry.uncompressedSize, stored = entry.compressedSize
        guard declared <= UInt64(Int.max) else { throw sizes.fail("\(name) declares \(declared) bytes") }
        let size = Int(declared)
        if let expected, expected != size {
            throw sizes.fail("\(name) holds \(size) bytes, its tensor storage needs \(expected)")
        }
        if let limit, size > limit { throw sizes.fail("\(name) declares \(size) bytes, over the limit of \(limit) for it") }
        guard stored <= fileBytes else {
            throw sizes.fail("\(name) claims \(stored) compressed bytes, the file has \(fileBytes) (truncated?)")
        }
        guard declared <= stored.multipliedReportingOverflow(by: Self.maxDeflateRatio).partialValue + 1024 else {
            throw sizes.fail(
                "\(name) declares \(declared) bytes from \(stored) compressed bytes, more than deflate can produce (a zip bomb?)")
        }
        let total = try sizes.sum(extracted, size, "the decompressed members")
        try sizes.withinLimit(total, "decompressing \(name)")
        guard let bytes = LoadedBytes(count: size) else { throw sizes.fail("\(name): cannot allocate \(size) bytes") }
        var written = 0
        let checksum: CRC32
        do {
            checksum = try archive.extract(entry, skipCRC32: false) { chunk in
                guard chunk.count <= size - written else { throw ZipBomb() }
                chunk.copyBytes(to: (bytes.base + written).assumingMemoryBound(to: UInt8.self), count: chunk.count)
                written += chunk.count
            }
        } catch is ZipBomb {
            throw sizes.fail("\(name) inflates past its declared \(size) bytes (a zip bomb?)")
        } catch {
            throw sizes.fail("cannot read \(name) from the archive (truncated?): \(error)")
        }
        guard written == size else { throw sizes.fail("\(name) inflates to \(written) bytes, it declares \(size) (truncated?)") }
        guard checksum == entry.checksum else {
            throw sizes.fail(
                "\(name) fails its CRC-32 check (stored \(String(entry.checksum, radix: 16)), computed \(String(checksum, radix: 16)): the file is damaged)"
            )
        }
        extracted = total
        return bytes
    }

    private struct ZipBomb: Error {}
}
