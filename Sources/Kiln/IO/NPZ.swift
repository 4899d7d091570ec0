import Foundation
import ZIPFoundation

/// NumPy .npz archives: a zip of .npy files, one per array (`np.savez`). Writes are atomic.
public enum NPZ {
    public static func read(_ url: URL) throws -> [(String, Tensor)] {
        var zip = try ZipMembers(url)
        var arrays: [(String, Tensor)] = []
        for entry in zip.archive where entry.path.hasSuffix(".npy") {
            let bytes = try zip.extract(entry)
            arrays.append((String(entry.path.dropLast(4)), try NPY.decode(bytes.buffer, file: "\(url.path):\(entry.path)")))
        }
        return arrays
    }

    public static func write(_ arrays: [(String, Tensor)], to url: URL) throws {
        do {
            let archive = try Archive(data: Data(), accessMode: .create)
            for (name, tensor) in arrays {
                let data = NPY.encode(tensor)
                try archive.addEntry(with: name + ".npy", type: .file, uncompressedSize: Int64(data.count)) { position, size in
                    data.subdata(in: Int(position)..<Int(position) + size)
                }
            }
            try archive.data!.writeAtomically(to: url)
        } catch {
            throw CheckpointError(file: url.path, detail: "cannot write .npz: \(error)")
        }
    }
}
