import ArgumentParser
import Foundation
import Kiln
import KilnData
import KilnModels
import KilnStudy

@main
struct Landuse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "landuse",
        abstract: "Land-use classification study: train, evaluate, predict, compare strategies, sweep hyper-parameters.",
        discussion: "Without --data, the embedded synthetic land-use set is used (and reports say so).",
        subcommands: [Train.self, Evaluate.self, Predict.self, Explain.self, Compare.self, Sweep.self, Export.self],
        defaultSubcommand: Compare.self
    )
}

/// Where the images come from and how the run is laid out.
struct DataOptions: ParsableArguments {
    @Option(help: "ImageFolder root (root/<class>/<images>), e.g. UC Merced's Images folder. Default: the synthetic set.")
    var data: String?
    @Option(help: "Images per class of the synthetic set.") var syntheticPerClass = 40
    @Option(help: "Input side in pixels (default: 224 for real data, 64 for the synthetic set).") var inputSize: Int?
    @Option(help: "Seed of the split, the shuffling, augmentation and initialisation.") var seed: UInt64 = 0
    @Flag(help: "Skip (and report) images that cannot be decoded instead of stopping.") var skipBad = false
    @Option(help: "Kernel threads (default: all cores).") var threads: Int?

    var resolvedInputSize: Int { inputSize ?? (data == nil ? 64 : 224) }

    func validate() throws {
        if let inputSize, inputSize < 8 { throw ValidationError("--input-size must be at least 8, got \(inputSize)") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        guard syntheticPerClass >= 5 else {
            throw ValidationError("--synthetic-per-class must be at least 5 (a split needs train, validation and test images)")
        }
    }

    func prepare(_ directory: URL, progress: ProgressReporter) throws -> StudyData {
        if let threads { Threads.count = threads }
        return try StudyData.prepare(
            root: data.map { URL(fileURLWithPath: $0) }, syntheticPerClass: syntheticPerClass,
            inputSize: resolvedInputSize, seed: seed, skipBad: skipBad, directory: directory, progress: progress)
    }
}

struct TrainingOptions: ParsableArguments {
    @Option(help: "Epochs.") var epochs = 8
    @Option(help: "Batch size.") var batch = 32
    @Flag(
        inversion: .prefixedNo,
        help:
            "Frozen runs: compute the frozen backbone once per image and augmentation variant and train the head on the cached features."
    ) var featureCache = true
    @Option(help: "Augmentation variants a cached frozen run draws from (1–8 symmetries of the centre crop; 2: it and its mirror).")
    var cacheVariants = 2
    @Flag(
        help:
            "Under mpirun: BatchNorm normalises over the global batch (SyncBatchNorm), so N ranks take one process's steps; default: each rank's own share."
    ) var syncBn = false

    func validate() throws {
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1, got \(batch)") }
        guard (1...8).contains(cacheVariants) else { throw ValidationError("--cache-variants must be 1…8, got \(cacheVariants)") }
    }

    func studyOptions(seed: UInt64) -> Study.Options {
        var options = Study.Options()
        (options.epochs, options.batchSize, options.seed) = (epochs, batch, seed)
        (options.featureCache, options.cacheVariants) = (featureCache, cacheVariants)
        return options
    }
}

extension DataOptions {
    /// The job (one process, or the ranks of an mpirun launch), data, progress output and the
    /// output folder of a study command.
    func prepareStudy(_ out: String, synchronizeBatchNorm: Bool) throws -> (StudyData, ProgressReporter, URL, DistributedJob) {
        let progress = ProgressReporter()
        let directory = URL(fileURLWithPath: out)
        let job = try joinJob(synchronizeBatchNorm: synchronizeBatchNorm, threads: threads, progress: progress)
        return (try prepare(directory, progress: progress), progress, directory, job)
    }
}

/// Runs `body`, printing a typed error as `error: …` and exiting 1.
/// In an MPI job, a failing rank ends every rank (see `leaveJob`).
func reporting<T>(_ body: () throws -> T) throws -> T {
    do {
        let result = try body()
        leaveJob(failure: nil)
        return result
    } catch let error as ValidationError {
        leaveJob(failure: error)
        throw error
    } catch let error as ExitCode {
        leaveJob(failure: error)
        throw error
    } catch {
        leaveJob(failure: error)
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

extension Strategy: ExpressibleByArgument {}

/// What Ctrl-C prints before the process exits 130 (a C signal handler cannot capture context).
nonisolated(unsafe) private var interruptMessage: UnsafeMutablePointer<CChar>?

/// On SIGINT: say how to continue, then exit 130 like a shell would. The checkpoint of the last
/// finished epoch is intact (checkpoints are written atomically).
func onInterrupt(say message: String) {
    interruptMessage = strdup("\n" + message + "\n")
    // A launcher may hand SIGINT over blocked; Ctrl-C must still reach the handler.
    var unblock = sigset_t()
    sigemptyset(&unblock)
    sigaddset(&unblock, SIGINT)
    sigprocmask(SIG_UNBLOCK, &unblock, nil)
    signal(SIGINT) { _ in
        if let text = interruptMessage { _ = write(STDERR_FILENO, text, strlen(text)) }
        _exit(130)
    }
}
