import Foundation
import Kiln
import KilnData
import ZIPFoundation

/// Hostile weight and image files, one per class of crash the fuzzing campaign found (issue 10),
/// each with the words its error must contain.
struct HostileInput {
    let name: String
    let url: URL
    /// A substring of the expected error.
    let expected: String

    /// Writes every input into `dir`.
    static func all(in dir: URL) throws -> [HostileInput] {
        var inputs: [HostileInput] = []
        func add(_ name: String, _ expected: String, _ write: (URL) throws -> Void) throws {
            let url = dir.appendingPathComponent(name)
            try write(url)
            inputs.append(HostileInput(name: name, url: url, expected: expected))
        }
        /// A torch checkpoint whose state dict is `{key: tensor}` with the given tensor fields.
        func pth(_ name: String, _ expected: String, count: Int, shape: [Int], strides: [Int], offset: Int = 0, storageBytes: Int = 16)
            throws
        {
            try add(name, expected) { url in
                var p = PickleWriter()
                p.emptyDict()
                p.string("w")
                p.tensor(storage: "0", count: count, offset: offset, shape: shape, strides: strides)
                p.raw(0x73)  // SETITEM
                p.stop()
                try TorchCheckpoint.writeArchive(pickle: p.bytes, storages: [("0", Data(count: storageBytes))], to: url)
            }
        }

        // Integer overflow on attacker-chosen sizes.
        try add("pickle-string-length.pth", "runs past the end") { url in
            var p = PickleWriter()
            p.raw(0x8D, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])  // BINUNICODE8 of 2^63-1 bytes
            try TorchCheckpoint.writeArchive(pickle: p.bytes, storages: [], to: url)
        }
        try pth("storage-numel-overflow.pth", "overflows", count: Int.max / 2, shape: [4], strides: [1])
        try pth("shape-product-overflow.pth", "overflows", count: 4, shape: [1 << 40, 1 << 40], strides: [1, 1])
        try pth("stride-last-element-overflow.pth", "overflows", count: 4, shape: [4, 1], strides: [Int.max / 2, 1])
        try pth("negative-stride.pth", "negative stride", count: 4, shape: [4], strides: [-1], offset: 3)
        try pth("stride-past-storage.pth", "runs past its storage", count: 4, shape: [4], strides: [2])
        try pth("stride0-expansion.pth", "over the limit", count: 1, shape: [1_000_000, 1_000_000], strides: [0, 0], storageBytes: 4)
        try add("safetensors-offsets-overflow.safetensors", "data_offsets") { url in
            try safetensors(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[9223372036854775807,1]}}"#, to: url)
        }
        try add("safetensors-offsets-sum-overflow.safetensors", "overflows") { url in
            try safetensors(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,9223372036854775807]}}"#, to: url)
        }
        try add("safetensors-shape-overflow.safetensors", "overflows") { url in
            try safetensors(#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, to: url)
        }
        try add("npy-shape-overflow.npz", "overflows") { url in
            let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"
            let npy = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count), 0]) + Data(header.utf8)
            try npz([("x.npy", npy)], to: url)
        }
        // TF.js: shape products, negative shapes, offsets, path traversal.
        try add("tfjs-shape-overflow.json", "overflows") { url in
            try tfjs(
                #"[{"paths":["w.bin"],"weights":[{"name":"c/kernel","shape":[4294967296,4294967296,1,1],"dtype":"float32"}]}]"#, to: url)
        }
        try add("tfjs-negative-shape.json", "negative dimension") { url in
            try tfjs(#"[{"paths":["w.bin"],"weights":[{"name":"c/bias","shape":[-3],"dtype":"float32"}]}]"#, to: url)
        }
        try add("tfjs-offset-overflow.json", "overflows") { url in
            try tfjs(
                #"[{"paths":["w.bin"],"weights":[{"name":"c/bias","shape":[2],"dtype":"float32"},{"name":"d/bias","shape":[2305843009213693951],"dtype":"float32"}]}]"#,
                to: url)
        }
        try add("tfjs-path-traversal.json", "leaves the model's folder") { url in
            try tfjs(#"[{"paths":["../../../../etc/passwd"],"weights":[{"name":"c/bias","shape":[1],"dtype":"float32"}]}]"#, to: url)
        }
        // Recursion: a state dict holding itself; a million nested tuples.
        try add("self-referencing-model.pth", "contains itself") { url in
            var p = PickleWriter()
            p.emptyDict()
            p.put(0)
            p.string("model")
            p.get(0)
            p.raw(0x73)
            p.stop()
            try TorchCheckpoint.writeArchive(pickle: p.bytes, storages: [], to: url)
        }
        try add("nested-tuples.pth", "not a dict") { url in
            var p = PickleWriter()
            p.emptyTuple()
            for _ in 0..<1_000_000 { p.raw(0x85) }  // TUPLE1
            p.stop()
            try TorchCheckpoint.writeArchive(pickle: p.bytes, storages: [], to: url, deflate: true)
        }
        // Pickles that name code: INST form, a name with a newline, the extension registry.
        try add("inst-os-system.pth", "'os.system'") { url in
            var p = PickleWriter()
            p.mark()
            p.string("echo pwned")
            p.raw(0x69, Array("os\nsystem\n".utf8))  // INST
            p.stop()
            try TorchCheckpoint.writeArchive(pickle: p.bytes, storages: [], to: url)
        }
        try add("newline-global.pth", "'posix.sys\\u{a}tem'") { url in
            var p = PickleWriter()
            p.string("posix")
            p.string("sys\ntem")
            p.raw(0x93)  // STACK_GLOBAL
            p.stop()
            try TorchCheckpoint.writeArchive(pickle: p.bytes, storages: [], to: url)
        }
        // Zip members: inflating past their declared size, failing their CRC; zips that are neither format.
        try add("zip-bomb.pth", "zip bomb") { url in
            // data.pkl: a valid pickle, then a megabyte of zeros after its STOP, declared as 64 bytes.
            var p = PickleWriter()
            p.emptyDict()
            p.stop()
            try TorchCheckpoint.writeArchive(pickle: p.bytes + [UInt8](repeating: 0, count: 1 << 20), storages: [], to: url, deflate: true)
            try patchDeclaredSize(of: "archive/data.pkl", to: 64, in: url)
        }
        try add("zip-crc.pth", "CRC-32") { url in
            try pthWithStorage(Data(repeating: 7, count: 64), deflate: false, to: url)
            var bytes = try Data(contentsOf: url)
            let at = bytes.range(of: Data(repeating: 7, count: 64))!.lowerBound
            bytes[at] = 8
            try bytes.write(to: url)
        }
        try add("plain.zip", "neither data.pkl") { url in try npz([("readme.txt", Data("hi".utf8))], to: url) }
        return inputs
    }

    /// A 16384² TIFF in a few hundred bytes (the pixel data is never there).
    static func tiffBomb(in dir: URL) throws -> URL {
        let url = dir.appendingPathComponent("bomb.tif")
        var bytes: [UInt8] = Array("II".utf8) + [42, 0, 8, 0, 0, 0]
        let entries: [(UInt16, UInt16, UInt32)] = [
            (256, 4, 16384), (257, 4, 16384), (258, 3, 8), (262, 3, 1), (273, 4, 200), (278, 4, 16384), (279, 4, 16384 * 16384),
        ]
        bytes += le(entries.count, 2)
        for (tag, type, value) in entries { bytes += le(Int(tag), 2) + le(Int(type), 2) + le(1, 4) + le(Int(value), 4) }
        bytes += le(0, 4) + [UInt8](repeating: 0, count: 64)
        try Data(bytes).write(to: url)
        return url
    }

    static func le(_ value: Int, _ width: Int) -> [UInt8] { (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    static func safetensors(_ header: String, to url: URL) throws {
        try (Data(le(header.utf8.count, 8)) + Data(header.utf8) + Data(count: 8)).write(to: url)
    }

    static func tfjs(_ manifest: String, to url: URL) throws {
        try Data(#"{"modelTopology": {}, "weightsManifest": \#(manifest)}"#.utf8).write(to: url)
        try Data(count: 8).write(to: url.deletingLastPathComponent().appendingPathComponent("w.bin"))
    }

    /// A zip of the given members (an .npz when they are .npy files).
    static func npz(_ members: [(String, Data)], to url: URL) throws {
        let archive = try Archive(data: Data(), accessMode: .create)
        for (path, data) in members {
            try archive.addEntry(with: path, type: .file, uncompressedSize: Int64(data.count)) { position, size in
                data.subdata(in: Int(position)..<Int(position) + size)
            }
        }
        try archive.data!.write(to: url)
    }

    static func pthWithStorage(_ storage: Data, deflate: Bool, to url: URL) throws {
        var p = PickleWriter()
        p.emptyDict()
        p.string("w")
        p.tensor(storage: "0", count: storage.count / 4, shape: [storage.count / 4], strides: [1])
        p.raw(0x73)
        p.stop()
        try TorchCheckpoint.writeArchive(pickle: p.bytes, storages: [("0", storage)], to: url, deflate: deflate)
    }

    /// Rewrites the uncompressed size a zip declares for `member`, in its local and central headers.
    static func patchDeclaredSize(of member: String, to size: UInt32, in url: URL) throws {
        var bytes = [UInt8](try Data(contentsOf: url))
        let name = Array(member.utf8)
        for (signature, sizeOffset, nameOffset) in [([0x50, 0x4B, 0x03, 0x04] as [UInt8], 22, 30), ([0x50, 0x4B, 0x01, 0x02], 24, 46)] {
            var i = 0
            while i + nameOffset + name.count <= bytes.count {
                if Array(bytes[i..<i + 4]) == signature, Array(bytes[i + nameOffset..<i + nameOffset + name.count]) == name {
                    for k in 0..<4 { bytes[i + sizeOffset + k] = UInt8(truncatingIfNeeded: size >> (8 * UInt32(k))) }
                }
                i += 1
            }
        }
        try Data(bytes).write(to: url)
    }
}
