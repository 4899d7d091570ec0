import Foundation
import Kiln
import KilnData

/// One loader under fuzzing. File-based loaders get the input written to a scratch file first.
enum FuzzTarget: String, CaseIterable {
    case pickle, pth, safetensors, npy, npz, tfjs, image, onnx

    static let selected: FuzzTarget = {
        guard let name = ProcessInfo.processInfo.environment["KILN_FUZZ_TARGET"], let target = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(
                Data("set KILN_FUZZ_TARGET to one of: \(allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            exit(2)
        }
        return target
    }()

    /// A folder of this process's own for scratch files.
    static let scratch: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-fuzz-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    static func file(_ name: String, _ data: Data) -> URL {
        let url = scratch.appendingPathComponent(name)
        try? data.write(to: url)
        return url
    }

    func run(_ data: Data) throws {
        switch self {
        case .pickle: _ = try Pickle.load([UInt8](data), file: "fuzz.pkl")
        case .pth: _ = try TorchCheckpoint.read(Self.file("input.pth", data))
        case .safetensors: _ = try Safetensors.read(Self.file("input.safetensors", data))
        case .npy: _ = try NPY.decode(data, file: "fuzz.npy")
        case .npz: _ = try NPZ.read(Self.file("input.npz", data))
        case .tfjs:
            // model.json, a NUL byte, then the bytes of the shard "weights.bin".
            let split = data.firstIndex(of: 0) ?? data.endIndex
            _ = Self.file("weights.bin", data[split...].dropFirst())
            _ = try TFJS.read(Self.file("model.json", data[..<split]))
        case .image: _ = try ImageDecoder.decode(data, file: "fuzz-image")
        case .onnx:
            // Import and trace: parsing, constant folding and every op's shape rule.
            let model = try ONNXModel(contentsOf: Self.file("model.onnx", data))
            let dims = model.declaredInputShape.enumerated().map { k, d in k == 0 ? 1 : min(d ?? 8, 64) }
            _ = try Graph.trace(model, input: Shape(dims))
        }
    }
}
