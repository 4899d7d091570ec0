import Foundation
import Kiln
import KilnData
import Testing

/// The landuse CLI as a new user meets it (issue 10): bad arguments are usage errors (exit 64),
/// bad states are errors that say what to do (exit 1), a diverging run never leaves a NaN
/// checkpoint, and SIGKILL at any moment leaves a loadable checkpoint.
struct LanduseHardeningTests {
    static let landuse = builtToolsFolder.appendingPathComponent("landuse")
    static let tiny = ["--synthetic-per-class", "5", "--input-size", "16", "--batch", "16", "--model", "basic-cnn", "--width", "0.25"]

    func folder() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-landuse-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    func train(_ out: URL, _ extra: [String]) throws -> (Int32, String) {
        try LanduseCLITests().run(["train"] + Self.tiny + ["--out", out.path] + extra)
    }

    @Test func divergingTrainingStopsNamingTheNodeAndWritesNoNaN() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (status, output) = try train(dir.appendingPathComponent("run"), ["--epochs", "3", "--lr", "1e9"])
        #expect(status == 1, "\(output)")
        #expect(output.contains("non-finite values in parameter '") || output.contains("non-finite values at node '"), "\(output)")
        #expect(output.contains("epoch 1") && output.contains("learning rate"))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("run/checkpoint.safetensors").path))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("run/config.json").path))
    }

    @Test func usageErrorsExit64() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        for (args, word) in [(["--batch", "0"], "--batch"), (["--epochs", "0"], "--epochs"), (["--input-size", "0"], "--input-size")] {
            let (status, output) = try train(dir.appendingPathComponent("run"), args)
            #expect(status == 64 && output.contains(word), "\(args): \(status) \(output)")
        }
    }

    @Test func existingRunsAndResumeNeedTheRightFlags() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        let (noCheckpoint, message) = try train(run, ["--epochs", "1", "--resume"])
        #expect(noCheckpoint == 1 && message.contains("no checkpoint"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: run.appendingPathComponent("split.json").path), "a failed run left split.json")
        let (first, output) = try train(run, ["--epochs", "1"])
        #expect(first == 0, "\(output)")
        let (again, refused) = try train(run, ["--epochs", "1"])
        #expect(again == 1 && refused.contains("already holds a finished run") && refused.contains("--force"), "\(refused)")
        let (forced, _) = try train(run, ["--epochs", "1", "--force"])
        #expect(forced == 0)
        let (extended, more) = try train(run, ["--epochs", "2", "--resume"])
        #expect(extended == 0 && more.contains("resuming after epoch 1"), "\(more)")
        let (done, nothing) = try train(run, ["--epochs", "2", "--resume"])
        #expect(done == 1 && nothing.contains("raise --epochs"), "\(nothing)")
    }

    @Test func aSplitOfOtherDataIsExplainedAndUnreadableDataRefused() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        #expect(try train(run, ["--epochs", "1"]).0 == 0)
        // An ImageFolder of two classes of undecodable files, trained into the synthetic run's folder.
        let data = dir.appendingPathComponent("data")
        for name in ["forest", "river"] {
            try FileManager.default.createDirectory(at: data.appendingPathComponent(name), withIntermediateDirectories: true)
            for i in 0..<3 { try Data("not an image".utf8).write(to: data.appendingPathComponent("\(name)/\(i).jpg")) }
        }
        let (status, output) = try train(run, ["--epochs", "1", "--force", "--data", data.path])
        #expect(status == 1 && output.contains("split.json was made for other data") && output.contains("--out"), "\(output)")
        let (empty, none) = try train(dir.appendingPathComponent("other"), ["--epochs", "1", "--data", data.path, "--skip-bad"])
        #expect(empty == 1 && none.contains("none of its 6 images could be decoded"), "\(none)")
    }

    @Test func nonFiniteCheckpointsAreRefusedByPredictAndResume() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        #expect(try train(run, ["--epochs", "1"]).0 == 0)
        let checkpoint = run.appendingPathComponent("checkpoint.safetensors")
        let (tensors, metadata) = try Safetensors.read(checkpoint)
        let index = tensors.firstIndex { $0.0 == "fc.weight" }!
        tensors[index].1.floats[3] = .nan
        try Safetensors.write(tensors, metadata: metadata, to: checkpoint)
        let image = dir.appendingPathComponent("x.png")
        try ImageDecoder.write(SyntheticLandUse.render(label: 3, index: 0, size: 20, seed: 1), to: image, format: .png)
        let (predicted, message) = try LanduseCLITests().run(["predict", "--run", run.path, image.path])
        #expect(predicted == 1 && message.contains("fc.weight") && message.contains("non-finite"), "\(message)")
        #expect(!message.contains("nan%"))
        try FileManager.default.removeItem(at: run.appendingPathComponent("result.json"))
        let (resumed, why) = try train(run, ["--epochs", "2", "--resume"])
        #expect(resumed == 1 && why.contains("fc.weight") && why.contains("non-finite"), "\(why)")
    }

    @Test func explainWritesAnOverlayPNG() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run")
        #expect(
            try LanduseCLITests().run([
                "train", "--synthetic-per-class", "5", "--input-size", "64", "--batch", "16", "--model", "basic-cnn",
                "--width", "0.25", "--epochs", "1", "--out", run.path,
            ]).0 == 0)
        let image = dir.appendingPathComponent("field.png")
        try ImageDecoder.write(SyntheticLandUse.render(label: 3, index: 0, size: 80, seed: 1), to: image, format: .png)
        let (status, output) = try LanduseCLITests().run([
            "explain", "--run", run.path, image.path, "--out", dir.appendingPathComponent("cam").path,
        ])
        #expect(status == 0 && output.contains("%"), "\(output)")
        let overlay = try ImageDecoder.decode(dir.appendingPathComponent("cam/field-cam.png"))
        #expect(overlay.width == 64 && overlay.height == 64)
    }

    @Test func ctrlCSaysHowToResume() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (process, pipe) = try start(["train"] + Self.tiny + ["--epochs", "1000", "--out", dir.appendingPathComponent("run").path])
        Thread.sleep(forTimeInterval: 2)
        kill(process.processIdentifier, SIGINT)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130, "\(output)")
        #expect(output.contains("interrupted") && output.contains("--resume"), "\(output)")
    }

    /// SIGKILL at random moments (20 times, resuming after each): the run folder always holds
    /// either no checkpoint (killed before the first epoch ended) or a complete one that loads,
    /// of an epoch no earlier than the last one seen.
    @Test func sigkillNeverLeavesATornCheckpoint() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = dir.appendingPathComponent("run"), checkpoint = run.appendingPathComponent("checkpoint.safetensors")
        var rng = SystemRandomNumberGenerator()
        var lastEpoch = 0, kills = 0
        for _ in 0..<20 {
            let resume = FileManager.default.fileExists(atPath: checkpoint.path) ? ["--resume"] : []
            let (process, pipe) = try start(["train"] + Self.tiny + ["--epochs", "100000", "--out", run.path] + resume)
            Thread.sleep(forTimeInterval: Double.random(in: 0.3...1.5, using: &rng))
            kill(process.processIdentifier, SIGKILL)
            _ = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            if process.terminationReason == .uncaughtSignal { kills += 1 }
            guard FileManager.default.fileExists(atPath: checkpoint.path) else { #expect(lastEpoch == 0); continue }
            let (tensors, metadata) = try Safetensors.read(checkpoint)
            let epoch = Int(metadata["epoch"] ?? "") ?? -1
            #expect(epoch >= max(lastEpoch, 1), "checkpoint of epoch \(epoch) after one of epoch \(lastEpoch)")
            #expect(tensors.contains { $0.0 == "fc.weight" } && tensors.allSatisfy { $0.1.nonFiniteSummary == nil })
            lastEpoch = epoch
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.contains(".partial-") }
        #expect(leftovers.count <= 1, "temporary files of killed writes pile up: \(leftovers)")
        #expect(kills >= 18, "only \(kills) of 20 runs were still running when killed")
        #expect(lastEpoch > 1, "the runs never got past epoch \(lastEpoch)")
    }

    func start(_ args: [String]) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = Self.landuse
        process.arguments = args
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        return (process, pipe)
    }
}
