import Crypto
import Foundation
import Kiln
import KilnModels
import Testing

/// Published weights fetched the torchvision way, against a loopback HTTP server serving a
/// random-weights ResNet-18 checkpoint: success (then the cache, no second request), a wrong
/// hash, a truncated transfer, a server error, no network; and the CLI offline.
struct WeightsDownloadTests {
    /// A ResNet-18 (10 classes) checkpoint from a fixed seed, and its SHA-256 in hex.
    static let checkpoint: (data: Data, sha256: String, store: ParameterStore, graph: Graph) = {
        let graph = try! Graph.trace(ResNet18(classes: 10), input: [1, 3, 32, 32])
        let store = ParameterStore(graph: graph, seed: 42)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-hub-source-\(UUID()).pth")
        try! TorchCheckpoint.write(store.stateTensors(for: graph), to: url)
        let data = try! Data(contentsOf: url)
        try? FileManager.default.removeItem(at: url)
        return (data, SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined(), store, graph)
    }()

    /// Weights named like torchvision's (`name-<sha256 prefix>.pth`), published at a URL nobody serves.
    func weights(prefix: String) -> PublishedWeights {
        PublishedWeights(
            name: "Test_Weights", url: URL(string: "https://weights.invalid/models/resnet18-\(prefix).pth")!, classifier: "fc", classes: 10)
    }

    func hub(_ server: URL?) throws -> WeightsHub {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-hub-\(UUID())/hub/checkpoints")
        return WeightsHub(checkpointsDirectory: cache, mirror: server)
    }

    /// Nothing but (possibly) the finished file is left in the cache folder.
    func leftovers(_ hub: WeightsHub) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: hub.checkpointsDirectory.path)) ?? []
    }

    func expectFailure(_ hub: WeightsHub, _ weights: PublishedWeights, matching check: (DownloadError.Problem) -> Bool) {
        do {
            _ = try hub.fetch(weights)
            Issue.record("the download should have failed")
        } catch let error as DownloadError {
            #expect(check(error.problem), "\(error)")
            #expect(error.description.contains(hub.cachedFile(weights).path), "names the cache path: \(error)")
            #expect(error.description.contains(hub.downloadURL(weights).absoluteString), "names the URL: \(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(leftovers(hub).isEmpty, "a failed download leaves nothing: \(leftovers(hub))")
    }

    @Test func downloadsVerifiesCachesAndLoads() throws {
        let source = Self.checkpoint
        let server = try LoopbackServer(.serve(source.data))
        defer { server.stop() }
        let hub = try hub(server.url)
        let published = weights(prefix: String(source.sha256.prefix(8)))
        let seen = Counter()
        let file = try hub.fetch(published) { received, expected in seen.add(received, expected) }
        #expect(file == hub.cachedFile(published))
        #expect(try Data(contentsOf: file) == source.data)
        #expect(seen.last == (Int64(source.data.count), Int64(source.data.count)), "progress reaches the whole file")
        #expect(leftovers(hub) == [published.fileName])
        _ = try hub.fetch(published)
        #expect(server.requests == 1, "a cached file is not downloaded again")

        // ResNet18(weights:)-style: a pretrained model starts a TrainStep from the file.
        let model = PretrainedModel(model: ResNet18(classes: 10), weights: published, hub: hub)
        let step = try TrainStep(model: model, inputShape: [2, 3, 32, 32], optimizer: .sgd(.init(learningRate: 0.1)))
        #expect(step.parameters["layer1.0.conv1.weight"]!.scalars == source.store["layer1.0.conv1.weight"]!.scalars)
        #expect(step.parameters["fc.weight"]!.scalars != source.store["fc.weight"]!.scalars, "the classifier is initialised afresh")
    }

    @Test func aWrongHashIsRefused() throws {
        let server = try LoopbackServer(.serve(Self.checkpoint.data))
        defer { server.stop() }
        let hub = try hub(server.url)
        expectFailure(hub, weights(prefix: "deadbeef")) {
            if case let .hashMismatch(expected, actual) = $0 { return expected == "deadbeef" && actual == Self.checkpoint.sha256 }
            return false
        }
    }

    @Test func aTruncatedTransferIsRefused() throws {
        let source = Self.checkpoint
        let server = try LoopbackServer(.truncate(source.data, after: source.data.count / 3))
        defer { server.stop() }
        let hub = try hub(server.url)
        expectFailure(hub, weights(prefix: String(source.sha256.prefix(8)))) {
            if case let .truncated(received, expected) = $0 { return received < expected && expected == Int64(source.data.count) }
            return false
        }
    }

    @Test func aServerErrorIsReported() throws {
        let server = try LoopbackServer(.status(500))
        defer { server.stop() }
        let hub = try hub(server.url)
        expectFailure(hub, weights(prefix: "f37072fd")) {
            if case .httpStatus(500) = $0 { return true }
            return false
        }
    }

    @Test func noNetworkFailsAtOnce() throws {
        let port = try LoopbackServer.closedPort()
        let hub = try hub(URL(string: "http://127.0.0.1:\(port)/models")!)
        let start = Date()
        expectFailure(hub, weights(prefix: "f37072fd")) {
            if case .unreachable = $0 { return true }
            return false
        }
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test func landuseOfflineSaysWhatToDo() throws {
        let port = try LoopbackServer.closedPort()
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-hub-cli-\(UUID())")
        defer { try? FileManager.default.removeItem(at: home) }
        let start = Date()
        let (status, message) = try runTool(
            "landuse", ["compare", "--resnet-weights", "imagenet", "--out", home.appendingPathComponent("run").path],
            environment: ["TORCH_HOME": home.path, "KILN_WEIGHTS_URL": "http://127.0.0.1:\(port)/models"])
        #expect(status == 1, "\(message)")
        #expect(Date().timeIntervalSince(start) < 30)
        #expect(message.contains("http://127.0.0.1:\(port)/models/resnet18-f37072fd.pth"), "\(message)")
        #expect(message.contains(home.appendingPathComponent("hub/checkpoints/resnet18-f37072fd.pth").path), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: home.appendingPathComponent("run/report.md").path))
    }
}

/// The last progress report.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (Int64, Int64?) = (0, nil)
    func add(_ received: Int64, _ expected: Int64?) { lock.withLock { value = (received, expected) } }
    var last: (Int64, Int64?) { lock.withLock { value } }
}
