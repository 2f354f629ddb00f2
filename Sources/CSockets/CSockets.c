// Headers only (see include/CSockets.h); SwiftPM needs one source file.
#include "CSockets.h"
