// Thread control. OpenMP runs our loops; OpenBLAS (its OpenMP build) follows the same thread count and runs
// single-threaded when called from inside one of our parallel loops.
#pragma once

namespace dsmoe {

void set_num_threads(int n);  // n <= 0: all cores
int num_threads();

}  // namespace dsmoe
