import Kiln

/// The job a study runs in: one process, or the ranks of a data-parallel launch (`mpirun -np N
/// landuse …`). Every rank trains on its shard of each global batch; rank 0 alone prints and
/// writes files.
public struct DistributedJob: Sendable {
    public let communicator: any Communicator
    /// Training-mode BatchNorm over the global batch (`--sync-bn`).
    public var synchronizesBatchNorm: Bool

    public init(communicator: any Communicator, synchronizesBatchNorm: Bool = false) {
        (self.communicator, self.synchronizesBatchNorm) = (communicator, synchronizesBatchNorm)
    }

    public static var single: DistributedJob { DistributedJob(communicator: SingleProcessCommunicator()) }

    public var rank: Int { communicator.rank }
    public var ranks: Int { communicator.size }
    public var isRoot: Bool { communicator.rank == 0 }
    public var isDistributed: Bool { communicator.size > 1 }

    /// What a training step needs to join the job (nil for one process).
    var dataParallel: DataParallel? {
        isDistributed ? DataParallel(communicator: communicator, synchronizesBatchNorm: synchronizesBatchNorm) : nil
    }

    /// Sums of per-rank counts and totals (a no-op in one process).
    func sum(_ values: [Double]) throws -> [Double] {
        var values = values
        try communicator.allReduceSum(&values)
        return values
    }
}

extension Evaluation {
    /// The evaluation of every rank's shard together.
    func merged(over job: DistributedJob) throws -> Evaluation {
        guard job.isDistributed else { return self }
        let k = classes.count
        let totals = try job.sum(confusion.flatMap { $0.map(Double.init) } + [lossSum, Double(count)])
        return Evaluation(
            classes: classes, confusion: (0..<k).map { row in (0..<k).map { Int(totals[row * k + $0]) } },
            lossSum: totals[k * k], count: Int(totals[k * k + 1]))
    }
}
