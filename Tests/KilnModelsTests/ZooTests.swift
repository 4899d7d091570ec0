import Foundation
import Kiln
import KilnModels
import Testing

struct ZooTests {
    func params(_ name: String, classes: Int, width: Double? = nil) throws -> Int {
        let graph = try Graph.trace(try Zoo.model(name, classes: classes, width: width), input: [1, 3, 224, 224])
        return GraphSummary(graph).totalParams
    }

    @Test func resnet18MatchesTorchvisionCounts() throws {
        #expect(try params("resnet18", classes: 1000) == 11_689_512)
        #expect(try params("resnet18", classes: 21) == 11_187_285)
    }

    @Test func resnet18StateDictKeysAreTorchvisions() throws {
        let graph = try Graph.trace(ResNet18(classes: 21), input: [1, 3, 64, 64])
        let keys = graph.stateValues.map(\.name)
        #expect(keys.count == 122)  // len(torchvision.models.resnet18().state_dict())
        #expect(graph.parameters.count == 62)
        #expect(
            keys.prefix(6) == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"])
        #expect(keys.contains("layer2.0.downsample.0.weight"))
        #expect(keys.contains("layer4.1.bn2.running_var"))
        #expect(keys.suffix(2) == ["fc.weight", "fc.bias"])
        #expect(try graph.value(named: "fc.weight").shape == [21, 512])
    }

    @Test(arguments: [32, 64, 224, 250])
    func resnet18AcceptsAnyInputFrom32(_ side: Int) throws {
        let graph = try Graph.trace(ResNet18(classes: 21), input: [2, 3, side, side])
        #expect(graph[graph.outputs["logits"]!].shape == [2, 21])
    }

    @Test func basicCNNLayout() throws {
        let graph = try Graph.trace(BasicCNN(classes: 21), input: [1, 3, 224, 224])
        let keys = graph.stateValues.map(\.name)
        for i in 0..<4 {
            #expect(keys.contains("blocks.\(i).conv.weight"))
            for suffix in ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"] {
                #expect(keys.contains("blocks.\(i).bn.\(suffix)"))
            }
        }
        #expect(try graph.value(named: "blocks.3.conv.weight").shape == [256, 128, 3, 3])
        #expect(GraphSummary(graph).totalParams == (864 + 18432 + 73728 + 294912) + 2 * (32 + 64 + 128 + 256) + 256 * 21 + 21)
    }

    @Test func mobileNetV2MatchesKeras() throws {
        // Keras MobileNetV2(alpha=1.0) has 3,504,872 trainable parameters with the 1000-class top.
        #expect(try params("mobilenet-v2", classes: 1000) == 3_504_872)
        let graph = try Graph.trace(MobileNetV2(classes: 21, width: 0.35), input: [1, 3, 224, 224])
        let keys = graph.stateValues.map(\.name)
        for key in [
            "Conv1.weight", "bn_Conv1.running_var", "expanded_conv_depthwise.weight", "expanded_conv_project_BN.bias",
            "block_1_expand.weight", "block_16_project.weight", "Conv_1.weight", "Conv_1_bn.weight", "predictions.weight",
        ] {
            #expect(keys.contains(key), "\(key)")
        }
        #expect(try graph.value(named: "Conv1.weight").shape == [16, 3, 3, 3])
        #expect(try graph.value(named: "expanded_conv_depthwise.weight").shape == [16, 1, 3, 3])
        #expect(try graph.value(named: "Conv_1.weight").shape == [1280, 112, 1, 1])
        #expect(graph.node(named: "block_1_pad") != nil && graph.node(named: "block_2_add") != nil)
        #expect(graph.node(named: "block_1_add") == nil)
        // Keras' base (everything but the head): 410,208 floats including BN moving statistics.
        let base = graph.stateValues.filter { $0.dtype == .float32 && !$0.name.hasPrefix("predictions") }
        #expect(base.reduce(0) { $0 + $1.shape.count } == 410_208)
        #expect(graph[graph.outputs["logits"]!].shape == [1, 21])
    }

    /// The stride-2 padding follows Keras' correct_pad: [[0,1],[0,1]] on even sizes.
    @Test func mobileNetStridePaddingIsAsymmetric() throws {
        let graph = try Graph.trace(MobileNetV2(classes: 10, width: 0.35), input: [1, 3, 224, 224])
        #expect(graph[try graph.value(named: "Conv1_pad").id].shape == [1, 3, 225, 225])
        #expect(graph[try graph.value(named: "Conv1").id].shape == [1, 16, 112, 112])
        #expect(graph[try graph.value(named: "out_relu").id].shape == [1, 1280, 7, 7])
    }

    @Test(
        .enabled(
            if: FileManager.default.fileExists(atPath: WeightsTests.sharedMobileNet.path),
            "needs ../shared/weights (the real MobileNetV2-0.35 TF.js manifest), absent in a fresh clone"))
    func sharedTFJSManifestMatchesOurShapes() throws {
        let manifest = WeightsTests.sharedMobileNet
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: manifest)) as! [String: Any]
        let groups = json["weightsManifest"] as! [[String: Any]]
        let graph = try Graph.trace(MobileNetV2(classes: 21, width: 0.35), input: [1, 3, 224, 224])
        var checked = 0
        for group in groups {
            for weight in group["weights"] as! [[String: Any]] {
                let name = weight["name"] as! String
                guard !name.hasPrefix("dense") else { continue }
                let parts = name.split(separator: "/")
                let suffix = [
                    "kernel": "weight", "depthwise_kernel": "weight", "gamma": "weight", "beta": "bias",
                    "moving_mean": "running_mean", "moving_variance": "running_var",
                ][String(parts[1])]!
                let ours = try graph.value(named: "\(parts[0]).\(suffix)")
                #expect(ours.shape.count == (weight["shape"] as! [Int]).reduce(1, *), "\(name)")
                checked += 1
            }
        }
        #expect(checked == 260)
    }

    @Test func unknownModelAndBadArgumentsAreErrors() {
        #expect(throws: ZooError.self) { try Zoo.model("resnet50", classes: 10) }
        #expect(throws: ZooError.self) { try Zoo.model("resnet18", classes: 0) }
        #expect(throws: ZooError.self) { try Zoo.model("mobilenet-v2", classes: 10, width: -1) }
    }

    @Test func wrongInputChannelsIsAShapeErrorNamingTheStem() {
        do {
            _ = try Graph.trace(ResNet18(classes: 2), input: [1, 4, 64, 64])
            Issue.record("expected a shape error")
        } catch let GraphError.shapeMismatch(node, _, detail) {
            #expect(node == "conv1" && detail.contains("[1, 4, 64, 64]"))
        } catch { Issue.record("unexpected \(error)") }
    }
}
