/*
 * nelem.h - NELEM(a), the number of elements of an array (not of a
 * pointer: a must be an array in scope). Header-only; owns nothing.
 */
#ifndef MOAT_NELEM_H
#define MOAT_NELEM_H

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

#endif
