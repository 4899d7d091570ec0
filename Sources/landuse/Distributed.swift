import Foundation
import Kiln
import KilnMPI
import KilnStudy

/// The MPI job this process is a rank of, once joined (nil: one process, or not yet asked).
nonisolated(unsafe) var launchedJob: MPICommunicator?

/// The job this process trains in: the ranks of `mpirun -np N landuse …`, else one process. Only
/// rank 0 prints progress; threads per rank default to this machine's cores over its ranks.
func joinJob(synchronizeBatchNorm: Bool, threads: Int?, progress: ProgressReporter) throws -> DistributedJob {
    guard let mpi = try MPICommunicator.launched() else {
        return DistributedJob(communicator: SingleProcessCommunicator(), synchronizesBatchNorm: synchronizeBatchNorm)
    }
    launchedJob = mpi
    progress.quiet = mpi.rank != 0
    if threads == nil, ProcessInfo.processInfo.environment["KILN_THREADS"] == nil, let launch = MPICommunicator.launch() {
        Threads.count = threadsPerRank(localRanks: launch.localSize)
    }
    progress.line(
        "data-parallel: \(mpi.size) ranks × \(Threads.count) threads, BatchNorm \(synchronizeBatchNorm ? "synchronised over the global batch" : "per rank")"
    )
    return DistributedJob(communicator: mpi, synchronizesBatchNorm: synchronizeBatchNorm)
}

/// Cores of this process over the ranks sharing the machine — unless the launcher bound the
/// process to fewer cores than the machine has (mpirun's --bind-to core), which already divides them.
func threadsPerRank(localRanks: Int) -> Int {
    let allowed = Threads.count  // the CPUs this process may run on
    let online = max(sysconf(Int32(_SC_NPROCESSORS_ONLN)), 1)
    return allowed < online ? allowed : max(1, allowed / max(localRanks, 1))
}

/// After a command: MPI_Finalize on success; on failure, the error is printed and, in a job of
/// several ranks, every rank is ended (MPI_Abort) so none waits on a collective forever.
func leaveJob(failure: Error?) {
    guard let mpi = launchedJob else { return }
    if let failure, mpi.size > 1 { mpi.abort("error: \(failure)") }
    mpi.finalize()
}
