import Foundation
import Kiln
import KilnData

/// Seed corpora, written by Kiln's own writers: small valid files of each format, so the fuzzer
/// starts from inputs that reach deep into each loader. `Fuzz/run.sh` calls this (through
/// KILN_FUZZ_SEEDS) when a target's corpus folder is empty.
enum Seeds {
    static func write(to root: URL) throws {
        let fm = FileManager.default
        for target in FuzzTarget.allCases {
            try fm.createDirectory(at: root.appendingPathComponent(target.rawValue), withIntermediateDirectories: true)
        }
        func seed(_ target: FuzzTarget, _ name: String, _ data: Data) throws {
            try data.write(to: root.appendingPathComponent(target.rawValue).appendingPathComponent(name))
        }
        let weight = Tensor(shape: [2, 3], values: [1, -2, 3.5, 0, 0.25, -1e-3])
        let bias = Tensor(shape: [2], values: [0.5, -0.5])
        let counter = Tensor(shape: [], int64s: [7])
        let state: [(String, Tensor)] = [("conv.weight", weight), ("conv.bias", bias), ("bn.num_batches_tracked", counter)]
        let scratch = FuzzTarget.scratch

        // .pth: torch.save's layout, stored and deflated; a wrapped {"state_dict": …}; its pickles.
        let pth = scratch.appendingPathComponent("seed.pth")
        try TorchCheckpoint.write(state, to: pth)
        try seed(.pth, "state_dict.pth", Data(contentsOf: pth))
        var p = PickleWriter()
        p.emptyDict()
        p.string("state_dict")
        p.emptyDict()
        p.mark()
        p.string("fc.weight")
        p.tensor(storage: "0", count: 6, shape: [3, 2], strides: [1, 3])
        p.string("fc.bias")
        p.tensor(storage: "0", dtype: "Float", count: 6, offset: 4, shape: [2], strides: [1])
        p.setItems()
        p.raw(0x73)
        p.stop()
        try TorchCheckpoint.writeArchive(pickle: p.bytes, storages: [("0", Data(bytes: weight.data, count: 24))], to: pth, deflate: true)
        try seed(.pth, "wrapped-strided-deflated.pth", Data(contentsOf: pth))
        try seed(.pickle, "wrapped.pkl", Data(p.bytes))
        var q = PickleWriter()
        q.global("collections", "OrderedDict")
        q.emptyTuple()
        q.reduce()
        q.put(0)
        q.mark()
        q.string("w")
        q.tensor(storage: "1", dtype: "Half", count: 4, shape: [2, 2], strides: [2, 1])
        q.string("n")
        q.tensor(storage: "2", dtype: "Long", count: 1, shape: [], strides: [])
        q.setItems()
        q.stop()
        try seed(.pickle, "ordered-dict.pkl", Data(q.bytes))

        // safetensors, .npy, .npz.
        try seed(.safetensors, "state.safetensors", Safetensors.encode(state, metadata: ["epoch": "3", "model": "basic-cnn"]))
        try seed(.npy, "float.npy", NPY.encode(weight))
        try seed(.npy, "int.npy", NPY.encode(Tensor(shape: [3], int64s: [1, -2, 3])))
        let npz = scratch.appendingPathComponent("seed.npz")
        try NPZ.write([("x", weight), ("y", counter)], to: npz)
        try seed(.npz, "arrays.npz", Data(contentsOf: npz))

        // TF.js: model.json, NUL, the shard.
        let manifest = #"""
            {"modelTopology": {}, "weightsManifest": [{"paths": ["weights.bin"], "weights": [
              {"name": "Conv1/kernel", "shape": [1, 1, 2, 2], "dtype": "float32"},
              {"name": "bn_Conv1/gamma", "shape": [2], "dtype": "float32"},
              {"name": "bn_Conv1/moving_variance", "shape": [2], "dtype": "float32"},
              {"name": "dw/depthwise_kernel", "shape": [1, 1, 2, 1], "dtype": "float32"},
              {"name": "fc/kernel", "shape": [2, 1], "dtype": "float32"}]}]}
            """#
        let shard = (0..<14).flatMap { withUnsafeBytes(of: Float($0)) { Array($0) } }
        try seed(.tfjs, "model.json", Data(manifest.utf8) + Data([0]) + Data(shard))

        // ONNX: the importer's test model (Tests/Fixtures/generate_onnx.py).
        let tinynet = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/onnx/tinynet.onnx")
        try seed(.onnx, "tinynet.onnx", Data(contentsOf: tinynet))

        // Images: 8×8 RGB as JPEG, PNG, TIFF.
        let pixels = (0..<(8 * 8 * 3)).map { UInt8(truncatingIfNeeded: $0 * 37) }
        for format in [ImageDecoder.Format.jpeg, .png, .tiff] {
            let url = scratch.appendingPathComponent("seed.\(format.rawValue)")
            try ImageDecoder.write(RGBImage(width: 8, height: 8, pixels: pixels), to: url, format: format)
            try seed(.image, "8x8.\(format.rawValue)", Data(contentsOf: url))
        }
    }
}

/// libFuzzer calls this once before fuzzing: with KILN_FUZZ_SEEDS set, write the seed corpora there and exit.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    guard let folder = ProcessInfo.processInfo.environment["KILN_FUZZ_SEEDS"] else { return 0 }
    do {
        try Seeds.write(to: URL(fileURLWithPath: folder))
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("cannot write seeds: \(error)\n".utf8))
        exit(1)
    }
}
