/* lua_inc.h — the Lua 5.4 headers, from Debian's liblua5.4-dev layout. */
#ifndef CR_LUA_INC_H
#define CR_LUA_INC_H
#include <lua5.4/lua.h>
#include <lua5.4/lauxlib.h>
#include <lua5.4/lualib.h>
#endif
