/// How a `TrainStep` trains as one rank of a data-parallel job (PyTorch's DistributedDataParallel):
/// the same model on every rank, each on its own share of the batch; parameters and buffers
/// broadcast from rank 0 before the first step; gradients of trainable parameters summed over the
/// ranks in buckets while the backward pass runs, then averaged, so every rank takes the same
/// optimizer step. Frozen parameters are never communicated.
public struct DataParallel: Sendable {
    public var communicator: any Communicator
    /// BatchNorm in training normalises with the statistics of the whole global batch (SyncBatchNorm:
    /// sums reduced over the ranks in forward and backward); otherwise each rank uses its own
    /// share's statistics and rank 0's running statistics are broadcast before each step (DDP's default).
    public var synchronizesBatchNorm: Bool
    /// Gradient bytes per allreduce (DDP's bucket_cap_mb, 25 MB).
    public var bucketBytes: Int

    public init(communicator: any Communicator, synchronizesBatchNorm: Bool = false, bucketBytes: Int = 25 << 20) {
        (self.communicator, self.synchronizesBatchNorm, self.bucketBytes) = (communicator, synchronizesBatchNorm, bucketBytes)
    }
}

/// Time and volume of the gradient reduction, accumulated over a step's runs.
public struct CommunicationStatistics: Sendable {
    /// Seconds spent in communication calls (packing, starting, polling, waiting, unpacking).
    public var seconds: Double = 0
    /// Of which: waiting for reductions still running after the backward pass finished.
    public var waitSeconds: Double = 0
    public var bytes: Int = 0
    public var buckets: Int = 0
    public var steps: Int = 0
    public init() {}
}

/// What training-mode BatchNorm needs to normalise over every rank's share of the batch.
public struct BatchNormSynchronization {
    public let communicator: any Communicator
    /// Images in the global batch (the sum of every rank's).
    public let images: Int

    /// Elements per channel over the global batch of maps with `hw` pixels.
    public func count(hw: Int) -> Double { Double(images * hw) }

    /// Per-channel (Σ, Σ²) summed over the ranks, in place.
    func sum(_ moments: inout [Double]) throws { try communicator.allReduceSum(&moments) }

    /// A BN backward reduction [4, c] (local Σg and Σg·ẑ, global μ and 1/σ) with its first two rows
    /// summed over the ranks: what the input gradient needs (the affine gradients stay local and
    /// are averaged with the other gradients, as in SyncBatchNorm).
    func globalReduction(_ reduced: Tensor) throws -> Tensor {
        let c = reduced.shape[1]
        var sums = (0..<(2 * c)).map { Double(reduced.floats[$0]) }
        try communicator.allReduceSum(&sums)
        let global = reduced.clone()
        for i in 0..<(2 * c) { global.floats[i] = Float(sums[i]) }
        return global
    }
}
