import Foundation
import ZIPFoundation

/// NumPy .npz archives: a zip of .npy files, one per array (`np.savez`). Writes are atomic.
public enum NPZ {
    public static func read(_ url: URL) throws -> [(String, Tensor)] {
        let archive: Archive
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw CheckpointError(file: url.path, detail: "not a readable .npz (zip) archive: \(error)")
        }
        return try archive.filter { $0.path.hasSuffix(".npy") }.map { entry in
            let bytes = try TorchCheckpoint.extract(archive, entry, url.path)
            return (String(entry.path.dropLast(4)), try NPY.decode(Data(bytes), file: "\(url.path):\(entry.path)"))
        }
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
            try archive.data!.write(to: url, options: .atomic)
        } catch {
            throw CheckpointError(file: url.path, detail: "cannot write .npz: \(error)")
        }
    }
}
