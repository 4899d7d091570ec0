import Foundation
import Testing

@testable import Kiln

/// ONNX import against ONNX Runtime (fixtures by Tests/Fixtures/generate_onnx.py), the float64
/// oracle, frozen training of an imported graph, and malformed files.
struct ONNXImportTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/onnx")
    static let model = folder.appendingPathComponent("tinynet.onnx")

    func input() throws -> Tensor { try NPY.read(Self.folder.appendingPathComponent("tinynet_input.npy")) }

    /// max |a − b| / max |b|.
    func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) }.max()! / b.map(abs).max()!
    }

    @Test func compiledInferenceMatchesONNXRuntime() throws {
        let model = try ONNXModel(contentsOf: Self.model)
        let x = try input()
        let graph = try Compiler.inference(model, input: x.shape)
        let store = try model.pretrainedParameters(for: graph, seed: 0)
        let logits = try Executor(graph: graph, parameters: store).run(["input": x])["logits"]!
        let expected = try NPY.read(Self.folder.appendingPathComponent("tinynet_logits.npy"))
        #expect(logits.shape == expected.shape)
        #expect(relativeError(logits.scalars, expected.scalars) < 1e-5)
    }

    @Test func float64OracleAgreesWithTheCompiledGraph() throws {
        let model = try ONNXModel(contentsOf: Self.model)
        let x = try input()
        let unfused = try Compiler.inference(model, input: x.shape, fuse: false)
        let store = try model.pretrainedParameters(for: unfused, seed: 0)
        let reference = try Float64Evaluator(graph: unfused).run(["input": Float64Tensor(x)], parameters: store, mode: .inference)
        let expected = try NPY.read(Self.folder.appendingPathComponent("tinynet_logits.npy"))
        #expect(relativeError(reference["logits"]!.float32().scalars, expected.scalars) < 1e-5)
    }

    @Test func frozenTrainingOfAnImportedGraphDifferentiatesOnlyTheNewHead() throws {
        let model = try ONNXModel(contentsOf: Self.model, classes: 3)
        #expect(model.classifier != nil)
        #expect(model.classifierParameters == ["classifier.1.weight", "classifier.1.bias"])
        let configuration = TrainStep.Configuration(
            optimizer: .sgd(.init(learningRate: 0.5, momentum: 0.9)), trainOnly: model.classifierParameters)
        let graph = try Compiler.training(model, input: [4, 3, 16, 16], configuration)
        #expect(Set(graph.gradients.keys) == Set(model.classifierParameters))
        let head = model.classifier!
        let outside = graph.nodes.filter { $0.phase == .backward && !$0.name.hasPrefix(head) && !$0.name.hasPrefix("loss") }
        #expect(outside.isEmpty, "backward nodes outside the head: \(outside.map(\.name))")

        // Training it moves the loss on a fixed batch; the backbone keeps the file's weights.
        let step = try TrainStep(model: model, inputShape: [4, 3, 16, 16], configuration: configuration)
        let before = step.parameters["se.fc1.weight"]!.clone()
        let file = try model.parameterTensors(input: [4, 3, 16, 16])
        #expect(before.scalars == file["se.fc1.weight"]!.scalars)
        let x = Tensor(shape: [4, 3, 16, 16], values: (0..<(4 * 768)).map { Float(sin(Double($0) * 0.37)) })
        let labels = Tensor(shape: [4], int64s: [0, 1, 2, 1])
        let first = try step.run(images: x, labels: labels).loss
        var last = first
        for _ in 0..<60 { last = try step.run(images: x, labels: labels).loss }
        #expect(last < first - 0.1, "loss \(first) → \(last)")
        #expect(step.parameters["se.fc1.weight"]!.scalars == before.scalars)
    }

    /// The stem's Conv+ReLU (BN folded by the exporter) fuses into one step, and the fused
    /// training graph's gradients match the unfused graph's.
    @Test func fusedConvActivationTrainsLikeTheUnfusedGraph() throws {
        let model = try ONNXModel(contentsOf: Self.model)
        let x = try input()
        let fused = try Compiler.gradients(model, input: x.shape)
        #expect(fused.nodes.contains { $0.op is FusedConvActivationOp })
        let unfused = try Compiler.gradients(model, input: x.shape, fuse: false)
        let labels = Tensor(shape: [2], int64s: [3, 5])
        var results: [[String: [Float]]] = []
        for graph in [fused, unfused] {
            let store = try model.pretrainedParameters(for: graph, seed: 0)
            let keep = Set(graph.gradients.values.map { graph[$0].name })
            let executor = try Executor(graph: graph, parameters: store, mode: .training, keep: keep)
            try executor.run(["input": x, "labels": labels])
            results.append(try graph.gradients.mapValues { try executor.tensor(named: graph[$0].name).scalars })
        }
        #expect(results[0].keys.sorted() == results[1].keys.sorted())
        for (name, a) in results[0] {
            let b = results[1][name]!
            let scale = max(b.map(abs).max()!, 1e-6)
            #expect(zip(a, b).map { abs($0 - $1) }.max()! / scale < 1e-4, "\(name)")
        }
    }

    // MARK: malformed files

    func importError(_ bytes: [UInt8]) -> ONNXError? {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-onnx-\(UUID().uuidString).onnx")
        defer { try? FileManager.default.removeItem(at: url) }
        try? Data(bytes).write(to: url)
        do {
            let model = try ONNXModel(contentsOf: url)
            _ = try Graph.trace(model, input: [1, 3, 16, 16])
            return nil
        } catch let error as ONNXError {
            return error
        } catch {
            Issue.record("not an ONNXError: \(error)")
            return nil
        }
    }

    func model(_ edit: (inout Onnx_ModelProto) -> Void) throws -> [UInt8] {
        var m = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: Self.model))
        edit(&m)
        return Array(try m.serializedData())
    }

    @Test func truncatedFileIsAnErrorNamingTheFile() throws {
        let bytes = Array(try Data(contentsOf: Self.model))
        let error = try #require(importError(Array(bytes.prefix(bytes.count / 2))))
        #expect(error.file.hasSuffix(".onnx"))
        #expect(error.detail.contains("not a valid ONNX protobuf"))
    }

    @Test func tensorSizesAreCheckedAgainstTheBytesPresent() throws {
        let huge = try #require(importError(try model { $0.graph.initializer[0].dims = [1 << 40, 1 << 40] }))
        #expect(huge.detail.contains("overflows") || huge.detail.contains("limit"))
        let short = try #require(importError(try model { $0.graph.initializer[0].dims[0] += 1 }))
        #expect(short.detail.contains(try Onnx_ModelProto(serializedBytes: try Data(contentsOf: Self.model)).graph.initializer[0].name))
        let negative = try #require(importError(try model { $0.graph.initializer[0].dims[0] = -3 }))
        #expect(negative.detail.contains("negative"))
    }

    @Test func unsupportedOpIsNamedWithNodeAndOpset() throws {
        let error = try #require(importError(try model { $0.graph.node[0].opType = "GridSample" }))
        #expect(error.op?.contains("GridSample") == true && error.op?.contains("opset 17") == true)
        #expect(error.node != nil)
        #expect(error.description.contains("not supported"))
    }

    @Test func externalDataOutsideTheModelFolderIsRefused() throws {
        let error = try #require(
            importError(
                try model {
                    $0.graph.initializer[0].dataLocation = .external
                    $0.graph.initializer[0].clearRawData()
                    $0.graph.initializer[0].externalData = [
                        Onnx_StringStringEntryProto.with {
                            $0.key = "location"
                            $0.value = "../../etc/passwd"
                        }
                    ]
                }))
        #expect(error.detail.contains("outside the model's folder"))
    }
}
