/* Linux OS facts (being written). */
#include "platform.h"
