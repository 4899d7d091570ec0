import Foundation
import Kiln
import KilnMPI
import Testing

/// `mpirun -np N landuse train` against one process: with --sync-bn and no augmentation, the
/// ranks' checkpoint after an epoch is the single process's; a killed rank ends the job quickly.
/// Needs Open MPI (`mpirun`, and a build that found libopenmpi-dev); CI installs both.
struct DistributedCLITests {
    static let mpirun: String? = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":")
        .map { "\($0)/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    static let ready = mpirun != nil && MPICommunicator.isAvailable

    let root = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-mpi-\(UUID())")
    var landuse: String { builtToolsFolder.appendingPathComponent("landuse").path }

    /// mpirun's flags for a container (root) on a machine with fewer cores than ranks.
    static let mpirunFlags = ["--oversubscribe", "--allow-run-as-root", "--mca", "btl", "self,vader"]

    /// landuse with `arguments`, under `mpirun -np ranks` when ranks is set.
    func command(_ arguments: [String], ranks: Int?) -> (URL, [String]) {
        guard let ranks else { return (URL(fileURLWithPath: landuse), arguments) }
        return (URL(fileURLWithPath: Self.mpirun!), ["-np", "\(ranks)"] + Self.mpirunFlags + [landuse] + arguments)
    }

    func run(_ arguments: [String], ranks: Int?) throws -> (Int32, String) {
        let (executable, all) = command(arguments, ranks: ranks)
        return try runToCompletion(executable, all)
    }

    /// One epoch of six steps (84 training images), the last one of 4 images (1 per rank at -np 4).
    /// A small learning rate and ResNet-18 at width 8: SGD on this random-looking task amplifies
    /// rounding (a different summation order — other thread counts or kernel paths do the same —
    /// changes full-width ResNet-18's weights by 1e-1 relative within a few steps), and the test
    /// is about the ranks taking the same steps, not about that.
    func train(_ model: String, inputSize: Int, out: String, extra: [String] = []) -> [String] {
        [
            "train", "--model", model, "--epochs", "1", "--batch", "16", "--no-augment", "--synthetic-per-class", "5", "--lr", "0.001",
            "--input-size", "\(inputSize)", "--out", root.appendingPathComponent(out).path,
        ] + (model == "resnet18" ? ["--width", "0.125"] : []) + extra
    }

    func checkpoint(_ run: String) throws -> [String: [Float]] {
        let (tensors, _) = try Safetensors.read(root.appendingPathComponent(run).appendingPathComponent("checkpoint.safetensors"))
        return Dictionary(uniqueKeysWithValues: tensors.filter { $0.1.dtype == .float32 }.map { ($0.0, $0.1.scalars) })
    }

    func expectEqual(_ distributed: [String: [Float]], _ single: [String: [Float]], _ what: String) {
        #expect(distributed.keys.sorted() == single.keys.sorted(), "\(what): the checkpoints hold other tensors")
        var worst = (name: "", relative: Float(0))
        for (name, expected) in single {
            guard let actual = distributed[name] else { continue }
            let scale = max(expected.map(abs).max() ?? 0, 1e-6)
            let relative = (zip(actual, expected).map { abs($0 - $1) }.max() ?? 0) / scale
            if relative > worst.relative { worst = (name, relative) }
        }
        #expect(worst.relative <= 1e-5, "\(what): \(worst.name) differs by \(worst.relative) relative")
    }

    @Test(
        .enabled(if: ready, "needs Open MPI: mpirun on the PATH and Kiln built with libopenmpi-dev"),
        arguments: [("basic-cnn", 32, 2), ("basic-cnn", 32, 4), ("resnet18", 64, 2)])
    func ranksWithSyncBNWriteTheSingleProcessCheckpoint(model: String, inputSize: Int, ranks: Int) throws {
        defer { try? FileManager.default.removeItem(at: root) }
        let (status, output) = try run(train(model, inputSize: inputSize, out: "single", extra: ["--threads", "1"]), ranks: nil)
        #expect(status == 0, "\(output)")
        let (status2, output2) = try run(train(model, inputSize: inputSize, out: "ranks", extra: ["--sync-bn"]), ranks: ranks)
        #expect(status2 == 0, "\(output2)")
        #expect(output2.contains("data-parallel: \(ranks) ranks"))
        expectEqual(try checkpoint("ranks"), try checkpoint("single"), "\(model), \(ranks) ranks")
        let history = { (run: String) in try String(contentsOf: root.appendingPathComponent("\(run)/history.json"), encoding: .utf8) }
        #expect(try history("ranks").contains("\"trainLoss\""))
    }

    @Test(.enabled(if: ready, "needs Open MPI: mpirun on the PATH and Kiln built with libopenmpi-dev"))
    func aKilledRankEndsTheJobAndTheCheckpointStillLoads() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        let job = Process()
        (job.executableURL, job.arguments) = command(
            train("resnet18", inputSize: 32, out: "run", extra: ["--epochs", "1000", "--sync-bn"]), ranks: 2)
        let log = root.appendingPathComponent("log.txt")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        (job.standardOutput, job.standardError) = (handle, handle)
        try job.run()
        defer { if job.isRunning { job.terminate() } }
        let checkpoint = root.appendingPathComponent("run/checkpoint.safetensors")
        let started = Date()
        while !FileManager.default.fileExists(atPath: checkpoint.path), Date().timeIntervalSince(started) < 120 {
            Thread.sleep(forTimeInterval: 0.2)
        }
        try #require(FileManager.default.fileExists(atPath: checkpoint.path), "no checkpoint after 120 s")
        let ranks = try children(of: job.processIdentifier)
        try #require(ranks.count == 2, "mpirun's ranks: \(ranks)")
        kill(ranks[1], SIGKILL)
        let killed = Date()
        while job.isRunning, Date().timeIntervalSince(killed) < 30 { Thread.sleep(forTimeInterval: 0.1) }
        #expect(!job.isRunning, "the job still runs 30 s after a rank was killed")
        job.waitUntilExit()
        #expect(job.terminationStatus != 0)
        let output = try String(contentsOf: log, encoding: .utf8)
        #expect(output.contains("rank 1") && output.contains("signal 9"), "\(output.suffix(600))")
        let (tensors, metadata) = try Safetensors.read(checkpoint)
        #expect(!tensors.isEmpty && Int(metadata["epoch"] ?? "") ?? 0 >= 1)
    }

    /// The processes whose parent is `pid` (mpirun's ranks), by pid.
    func children(of pid: Int32) throws -> [Int32] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).filter { child in
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == pid
        }.sorted()
    }
}

/// How a process learns it is a rank: Open MPI's variables, else PMIx's; none outside a launcher.
struct MPILaunchTests {
    @Test func ranksComeFromTheLaunchersEnvironment() {
        let ompi = MPICommunicator.launch(environment: [
            "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
        ])
        #expect(ompi?.rank == 3 && ompi?.size == 4 && ompi?.localSize == 2)
        let pmix = MPICommunicator.launch(environment: ["PMIX_SIZE": "8", "PMIX_RANK": "5"])
        #expect(pmix?.rank == 5 && pmix?.size == 8 && pmix?.localSize == 8)
        #expect(MPICommunicator.launch(environment: ["PATH": "/usr/bin"]) == nil)
    }
}
