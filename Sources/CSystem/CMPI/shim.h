// Open MPI, found through pkg-config (ompi-c: libopenmpi-dev). Nothing is declared here: the
// module only carries MPI's compile and link flags to CKilnMPI, which includes <mpi.h> when it
// is there and builds without MPI otherwise.
