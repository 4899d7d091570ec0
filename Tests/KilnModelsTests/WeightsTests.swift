import Foundation
import Kiln
import KilnData
import KilnModels
import Testing

/// Weight files in and out, against fixtures written by Tests/Fixtures/generate.py.
struct WeightsTests {
    static let fixtures = FixtureWeights.directory
    static let packageRoot = fixtures.deletingLastPathComponent().deletingLastPathComponent()
    static let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")

    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-weights-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func torchCheckpointLoadsExactlyAndGivesPyTorchLogits() throws {
        let url = Self.fixtures.appendingPathComponent("weights/basic-cnn.pth")
        #expect(try WeightFile.detect(url) == .torch)
        let tensors = try WeightFile.read(url)
        let input = try NPY.read(FixtureWeights.url("basic-cnn", "input.npy"))
        let graph = try Graph.trace(BasicCNN(classes: 21), input: input.shape)
        #expect(tensors.map(\.0) == graph.stateValues.map(\.name))  // state_dict order
        for (key, t) in tensors {
            let expected = FixtureWeights.tensor(key, shape: t.shape)
            #expect(
                t.dtype == expected.dtype
                    && Data(bytes: t.data, count: t.byteCount) == Data(bytes: expected.data, count: expected.byteCount), "\(key)")
        }
        let store = ParameterStore()
        let report = try store.load(tensors, for: graph, file: url.path)
        #expect(report.isClean && report.loaded.count == 26)
        let logits = try Executor(graph: try Compiler.inference(BasicCNN(classes: 21), input: input.shape), parameters: store)
            .run(["input": input])["logits"]!
        let reference = try NPY.readDoubles(FixtureWeights.url("basic-cnn", "logits_eval.npy"))
        #expect(relativeError(logits.scalars, reference.values) < 1e-5)
    }

    @Test func resnetCheckpointGradientsMatchPyTorch() throws {
        let tensors = try WeightFile.read(Self.fixtures.appendingPathComponent("weights/resnet18-w8.pth"))
        let input = try NPY.read(FixtureWeights.url("resnet18-w8-grad", "input.npy"))
        let labels = try NPY.read(FixtureWeights.url("resnet18-w8-grad", "labels.npy"))
        let graph = try Compiler.gradients(ResNet18(classes: 21, width: 8), input: input.shape)
        let store = ParameterStore()
        try store.load(tensors, for: graph, file: "resnet18-w8.pth")
        let executor = try Executor(
            graph: graph, parameters: store, mode: .training, keep: Set(graph.gradients.values.map { graph[$0].name }))
        try executor.run(["input": input, "labels": labels])
        #expect(graph.gradients.count == 62)
        for (name, id) in graph.gradients {
            let reference = try NPY.read(FixtureWeights.url("resnet18-w8-grad", "grad_\(name).npy"))
            #expect(relativeError(try executor.tensor(named: graph[id].name).scalars, reference.scalars.map(Double.init)) < 1e-4, "\(name)")
        }
    }

    /// `graphc grad` on the width-8 ResNet-18 .pth against PyTorch's float64 gradients: the
    /// default float64 evaluator to float32 storage precision, the compiled float32 kernels to 1e-4.
    @Test(arguments: [("float64", 5e-7), ("float32", 1e-4)])
    func graphcGradMatchesPyTorch(_ precision: String, _ tolerance: Double) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let output = dir.appendingPathComponent("g.safetensors")
        var args = [
            "grad", "--model", "resnet18", "--classes", "21", "--width", "0.125",
            "--weights", Self.fixtures.appendingPathComponent("weights/resnet18-w8.pth").path,
            "--input", FixtureWeights.url("resnet18-w8-grad", "input.npy").path,
            "--labels", FixtureWeights.url("resnet18-w8-grad", "labels.npy").path, "--output", output.path,
        ]
        if precision == "float32" { args += ["--precision", "float32"] }
        let (status, message) = try runGraphc(args)
        #expect(status == 0, "\(message)")
        guard status == 0 else { return }
        let grads = Dictionary(uniqueKeysWithValues: try Safetensors.read(output).tensors)
        let loss = try NPY.readDoubles(FixtureWeights.url("resnet18-w8-grad", "loss.npy")).values[0]
        #expect(abs(Double(grads["loss"]!.scalars[0]) - loss) / loss < 1e-6)
        #expect(grads.count == 63)
        for (key, tensor) in grads where key != "loss" {
            let reference = try NPY.read(FixtureWeights.url("resnet18-w8-grad", "grad_\(key).npy"))
            #expect(relativeError(tensor.scalars, reference.scalars.map(Double.init)) < tolerance, "\(precision) \(key)")
        }
    }

    /// The full 1000-class ResNet-18 file (44.7 MB) is written by PyTorch into a temporary folder
    /// when a Python with torch is available (KILN_PYTHON or python3); otherwise the width-8
    /// file above covers the same reader and loader. Logits through the library; loss and all
    /// 62 gradients at 224² through `graphc grad --precision float64` against PyTorch in float64
    /// (the float32 kernels' gradients are printed: on random inputs they can differ from any
    /// other implementation's where a ReLU input lies within float32 rounding of 0).
    @Test(
        .enabled(
            if: WeightsTests.torchPython != nil, "needs a Python with torch (set KILN_PYTHON); the width-8 .pth tests cover the format"))
    func fullResNet18FromPyTorch() throws {
        let python = Self.torchPython!
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let script = """
            import sys; sys.path.insert(0, '\(Self.fixtures.path)')
            import torch, numpy as np, generate as G
            torch.manual_seed(0); m = G.ResNet18(1000).eval()
            torch.save(m.state_dict(), '\(dir.path)/r18.pth')
            x = torch.randn(2, 3, 224, 224); np.save('\(dir.path)/x.npy', x.numpy())
            y = torch.tensor([0, 500]); np.save('\(dir.path)/y.npy', y.numpy())
            m = m.double()
            with torch.no_grad(): np.save('\(dir.path)/ref.npy', m(x.double()).numpy())
            loss = torch.nn.functional.cross_entropy(m.train()(x.double()), y); loss.backward()
            np.save('\(dir.path)/loss.npy', np.array(loss.item()))
            np.savez('\(dir.path)/grads.npz', **{k: p.grad.numpy().astype(np.float32) for k, p in m.named_parameters()})
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, "-c", script]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "the PyTorch reference script failed")
        let x = try NPY.read(dir.appendingPathComponent("x.npy"))
        let store = ParameterStore()
        let graph = try Compiler.inference(ResNet18(classes: 1000), input: x.shape)
        try store.load(WeightFile.read(dir.appendingPathComponent("r18.pth")), for: graph, file: "r18.pth")
        let logits = try Executor(graph: graph, parameters: store).run(["input": x])["logits"]!
        let reference = try NPY.readDoubles(dir.appendingPathComponent("ref.npy"))
        #expect(relativeError(logits.scalars, reference.values) < 1e-5)

        let expected = Dictionary(uniqueKeysWithValues: try NPZ.read(dir.appendingPathComponent("grads.npz")))
        let expectedLoss = try NPY.readDoubles(dir.appendingPathComponent("loss.npy")).values[0]
        for precision in ["float64", "float32"] {
            let output = dir.appendingPathComponent("grads-\(precision).safetensors")
            let (status, message) = try runGraphc([
                "grad", "--model", "resnet18", "--weights", dir.appendingPathComponent("r18.pth").path,
                "--input", dir.appendingPathComponent("x.npy").path, "--labels", dir.appendingPathComponent("y.npy").path,
                "--output", output.path, "--precision", precision,
            ])
            #expect(status == 0, "\(message)")
            guard status == 0 else { return }
            let grads = Dictionary(uniqueKeysWithValues: try Safetensors.read(output).tensors)
            #expect(grads.count == 63 && expected.count == 62)
            let lossError = abs(Double(grads["loss"]!.scalars[0]) - expectedLoss) / expectedLoss
            let worst = try expected.map { key, value in
                guard let ours = grads[key] else { throw GraphError.unknownName(key) }
                return (relativeError(ours.scalars, value.scalars.map(Double.init)), key)
            }.max { $0.0 < $1.0 }!
            if precision == "float64" {
                #expect(lossError < 1e-6 && worst.0 < 1e-6, "loss \(lossError), worst gradient \(worst)")
            }
            print(
                "full ResNet-18 at 224², graphc grad --precision \(precision) vs PyTorch float64: loss \(lossError), worst of 62 gradients \(worst.0) (\(worst.1))"
            )
        }
    }

    @Test func safetensorsRoundTripWithMetadataAndOptimizerState() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let step = try TrainStep(
            model: BasicCNN(classes: 4, channels: [4, 4, 4, 4]), inputShape: [2, 3, 16, 16],
            optimizer: .sgd(.init(learningRate: 0.1, momentum: 0.9)))
        let x = Tensor(zeros: [2, 3, 16, 16])
        for i in 0..<x.count { x.floats[i] = Float(i % 13) / 13 }
        try step.run(images: x, labels: Tensor(shape: [2], int64s: [0, 3]))
        let url = dir.appendingPathComponent("ckpt.safetensors")
        let saved = step.parameters.stateTensors(for: step.graph, includeOptimizer: true)
        try Safetensors.write(saved, metadata: ["epoch": "3", "model": "basic-cnn"], to: url)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["ckpt.safetensors"])  // no temp file left
        #expect(try WeightFile.detect(url) == .safetensors)
        let (loaded, metadata) = try Safetensors.read(url)
        #expect(metadata == ["epoch": "3", "model": "basic-cnn"])
        #expect(loaded.map(\.0) == saved.map(\.0))
        #expect(loaded.contains { $0.0.hasPrefix("optimizer.") && $0.0.hasSuffix("momentum_buffer") })
        for ((_, a), (_, b)) in zip(loaded, saved) {
            #expect(Data(bytes: a.data, count: a.byteCount) == Data(bytes: b.data, count: b.byteCount))
        }
    }

    @Test(arguments: ["weights.pth", "weights.safetensors"])
    func storesSaveAndLoadBothFormats(_ name: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let graph = try Graph.trace(BasicCNN(classes: 5, channels: [4, 8, 8, 8]), input: [1, 3, 16, 16])
        let store = ParameterStore(graph: graph, seed: 7)
        let url = dir.appendingPathComponent(name)
        try store.save(to: url, for: graph)
        #expect(try WeightFile.detect(url) == (name.hasSuffix(".pth") ? .torch : .safetensors))
        let back = try ParameterStore(contentsOf: url, for: graph)
        for key in store.keys {
            #expect(back[key]!.dtype == store[key]!.dtype && back[key]!.shape == store[key]!.shape, "\(key)")
            #expect(
                back[key]!.dtype == .int64 ? back[key]!.int64Scalars == store[key]!.int64Scalars : back[key]!.scalars == store[key]!.scalars
            )
        }
        store["fc.bias"]!.floats[0] = .infinity
        #expect(throws: CheckpointError.self) { try store.save(to: url, for: graph) }
    }

    @Test func npzRoundTrip() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = Tensor(shape: [2, 2], values: [1, 2, 3, 4]), b = Tensor(shape: [3], int64s: [7, 8, 9])
        try NPZ.write([("a", a), ("b", b)], to: dir.appendingPathComponent("x.npz"))
        #expect(try WeightFile.detect(dir.appendingPathComponent("x.npz")) == .npz)
        let back = try NPZ.read(dir.appendingPathComponent("x.npz"))
        #expect(back.map(\.0).sorted() == ["a", "b"])
        #expect(back.first { $0.0 == "a" }!.1.scalars == [1, 2, 3, 4])
        #expect(back.first { $0.0 == "b" }!.1.int64Scalars == [7, 8, 9])
    }

    @Test(arguments: [("evil-os-system", "os.system"), ("evil-builtins-eval", "builtins.eval")])
    func forbiddenGlobalsAreRefusedByName(_ c: (String, String)) throws {
        do {
            _ = try TorchCheckpoint.read(Self.fixtures.appendingPathComponent("weights/\(c.0).pth"))
            Issue.record("loaded a pickle naming \(c.1)")
        } catch let error as CheckpointError {
            #expect(error.description.contains("'\(c.1)'"))
        }
    }

    @Test func truncatedAndMalformedFilesAreClearErrors() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Truncated zip.
        let pth = try Data(contentsOf: Self.fixtures.appendingPathComponent("weights/basic-cnn.pth"))
        let truncated = dir.appendingPathComponent("truncated.pth")
        try pth.prefix(pth.count / 2).write(to: truncated)
        #expect(throws: CheckpointError.self) { try WeightFile.read(truncated) }
        // Safetensors whose header is longer than the file.
        let st = dir.appendingPathComponent("bad.safetensors")
        var bytes = Data()
        withUnsafeBytes(of: UInt64(1 << 20).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(Data("{\"a\":{}}".utf8))
        try bytes.write(to: st)
        do { _ = try Safetensors.read(st); Issue.record("accepted a short safetensors file") } catch let error as CheckpointError {
            #expect(error.description.contains("header claims"))
        }
        // TF.js with a truncated weights.bin.
        let model = dir.appendingPathComponent("model.json")
        try Data(
            """
            {"modelTopology": {}, "weightsManifest": [{"paths": ["weights.bin"], "weights": [
              {"name": "Conv1/kernel", "shape": [3, 3, 3, 16], "dtype": "float32"}]}]}
            """.utf8
        ).write(to: model)
        try Data(count: 100).write(to: dir.appendingPathComponent("weights.bin"))
        do { _ = try WeightFile.read(model); Issue.record("accepted a truncated weights.bin") } catch let error as CheckpointError {
            #expect(error.description.contains("weights.bin") && error.description.contains("Conv1/kernel"))
        }
        // Garbage.
        try Data("hello".utf8).write(to: dir.appendingPathComponent("x.bin"))
        #expect(throws: CheckpointError.self) { try WeightFile.read(dir.appendingPathComponent("x.bin")) }
    }

    @Test func strictAndNonStrictLoading() throws {
        let tensors = try WeightFile.read(Self.fixtures.appendingPathComponent("weights/basic-cnn.pth"))
        let tenClasses = try Graph.trace(BasicCNN(classes: 10), input: [1, 3, 32, 32])
        do {
            try ParameterStore().load(tensors, for: tenClasses, file: "basic-cnn.pth")
            Issue.record("strict load accepted a 21-class fc for 10 classes")
        } catch let error as LoadError {
            #expect(error.report.mismatched.map(\.key) == ["fc.weight", "fc.bias"])
            #expect(error.description.contains("size mismatch for fc.weight: file has [21, 256], model has [10, 256]"))
        }
        let report = try ParameterStore().load(tensors, for: tenClasses, file: "basic-cnn.pth", strict: false, skipPrefixes: ["fc"])
        #expect(report.skipped.sorted() == ["fc.bias", "fc.weight"])
        #expect(report.loaded.count == 24)
        // Another model's file: missing and unexpected keys, even non-strict.
        let resnet = try WeightFile.read(Self.fixtures.appendingPathComponent("weights/resnet18-w8.pth"))
        #expect(throws: LoadError.self) {
            try ParameterStore().load(resnet, for: tenClasses, file: "r", strict: false, skipPrefixes: ["fc"])
        }
    }

    @Test func graphcExitsWithOneOnBadInput() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try NPY.write(Tensor(zeros: [1, 3, 32, 32]), to: dir.appendingPathComponent("x.npy"))
        let run = runGraphc
        let evil = Self.fixtures.appendingPathComponent("weights/evil-os-system.pth").path
        let (status, message) = try run([
            "run", "--model", "basic-cnn", "--classes", "21", "--weights", evil,
            "--input", dir.appendingPathComponent("x.npy").path, "--output", dir.appendingPathComponent("y.npy").path,
        ])
        #expect(status == 1)
        #expect(message.contains("os.system"))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("y.npy").path))
        let (status2, message2) = try run([
            "run", "--model", "basic-cnn", "--classes", "10", "--weights",
            Self.fixtures.appendingPathComponent("weights/basic-cnn.pth").path,
            "--input", dir.appendingPathComponent("x.npy").path, "--output", dir.appendingPathComponent("y.npy").path,
        ])
        #expect(status2 == 1 && message2.contains("size mismatch for fc.weight"))
    }

    /// MobileNetV2-0.35 ImageNet weights (TF.js) on four UC Merced images against an independent
    /// float64 interpreter of the Keras graph (Tests/Fixtures/keras_reference.py).
    static let sharedMobileNet = shared.appendingPathComponent("weights/mobilenet_v2_0.35_imagenet_tfjs/model.json")

    @Test(
        .enabled(
            if: FileManager.default.fileExists(atPath: WeightsTests.sharedMobileNet.path),
            "needs ../shared/weights (the real MobileNetV2-0.35 TF.js weights), absent in a fresh clone"))
    func mobileNetTFJSFeaturesMatchKerasReference() throws {
        let modelJSON = Self.sharedMobileNet
        let info =
            try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("mobilenet-tfjs/images.json")))
            as! [String: Any]
        let images = info["images"] as! [String], sums = info["crop_pixel_sums"] as! [Int]
        let batch = Tensor(zeros: [images.count, 3, 224, 224])
        for (i, relative) in images.enumerated() {
            let rgb = try ImageDecoder.decode(Self.shared.appendingPathComponent("data/UCMerced_LandUse/Images/\(relative)"))
            var rng = SplitMix(seed: 0)
            let crop = Transform.centerCrop(224).apply(FloatImage(rgb), rng: &rng)
            #expect(
                crop.pixels.reduce(0.0) { $0 + Double(($1 * 255).rounded()) } == Double(sums[i]),
                "decoded pixels of \(relative) differ from PIL's")
            Transform.scaleToSymmetricUnit.apply(crop, rng: &rng).writeCHW(to: batch.floats + i * 3 * 224 * 224)
        }
        let model = MobileNetV2(classes: 21, width: 0.35)
        let plain = try Graph.trace(model, input: batch.shape)
        let store = ParameterStore(graph: plain)
        let report = try store.load(
            WeightFile.read(modelJSON), for: plain, file: modelJSON.path, strict: false, skipPrefixes: ["predictions"])
        #expect(report.loaded.count == 260 + 52)  // 260 tensors + num_batches_tracked of the 52 BN layers
        #expect(report.skipped.sorted() == ["predictions.bias", "predictions.weight"])
        #expect(report.unexpected.allSatisfy { $0.hasPrefix("dense_Dense") })
        let reference = try NPY.readDoubles(Self.fixtures.appendingPathComponent("mobilenet-tfjs/features.npy"))
        for fuse in [false, true] {
            let graph = try Compiler.inference(model, input: batch.shape, fuse: fuse)
            let executor = try Executor(graph: graph, parameters: store, keep: ["flatten"])
            try executor.run(["input": batch])
            let features = try executor.tensor(named: "flatten")
            #expect(features.shape == [4, 1280])
            let error = relativeError(features.scalars, reference.values)
            #expect(error < 1e-4, "fused \(fuse): relative error \(error)")
            print("MobileNetV2-0.35 TF.js features vs float64 Keras reference (fused \(fuse)): \(error)")
        }
    }

    /// graphc on a training checkpoint (weights + `optimizer.` slots, as `landuse train` writes),
    /// on a file of another class count, and on another model's file.
    @Test func graphcLoadsTrainingCheckpointsAndDiagnosesMismatches() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let x = dir.appendingPathComponent("x.npy"), y = dir.appendingPathComponent("y.npy")
        try NPY.write(Tensor(zeros: [1, 3, 32, 32]), to: x)
        let tensors = try WeightFile.read(Self.fixtures.appendingPathComponent("weights/basic-cnn.pth"))
        let momentum = tensors.filter { $0.1.dtype == .float32 }.map { ("optimizer.\($0.0).momentum_buffer", Tensor(zeros: $0.1.shape)) }
        let checkpoint = dir.appendingPathComponent("checkpoint.safetensors")
        try Safetensors.write(tensors + momentum, metadata: ["epoch": "3"], to: checkpoint)
        let common = ["run", "--model", "basic-cnn", "--input", x.path, "--output", y.path, "--weights"]
        let (strict, strictMessage) = try runGraphc(common + [checkpoint.path, "--classes", "21"])
        #expect(strict == 0, "\(strictMessage)")
        let logits = try NPY.read(y)
        // The trained classifier is loaded, not dropped (an all-zero image still gives fc.bias plus BN shifts).
        #expect(logits.shape == [1, 21] && logits.scalars.contains { $0 != 0 })
        let (nonStrict, skipped) = try runGraphc(common + [checkpoint.path, "--classes", "10", "--non-strict"])
        #expect(
            nonStrict == 0 && skipped.contains("skipped, shape differs for fc.weight: file has [21, 256], model has [10, 256]"),
            "\(skipped)")
        #expect(!skipped.contains("blocks.0.conv.weight"))
        let (wrong, diagnosis) = try runGraphc(
            common + [Self.fixtures.appendingPathComponent("weights/resnet18-w8.pth").path, "--classes", "21"])
        #expect(wrong == 1 && diagnosis.contains("looks like a resnet18") && diagnosis.contains("not a basic-cnn"), "\(diagnosis)")
        #expect(diagnosis.count < 1500 && diagnosis.contains("more)"), "\(diagnosis.count) characters")
    }

    func runGraphc(_ args: [String]) throws -> (Int32, String) { try runTool("graphc", args) }

    /// KILN_PYTHON (default python3) when it can import torch.
    static let torchPython: String? = {
        let python = ProcessInfo.processInfo.environment["KILN_PYTHON"] ?? "python3"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, "-c", "import torch, numpy"]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        process.waitUntilExit()
        return process.terminationStatus == 0 ? python : nil
    }()
}
