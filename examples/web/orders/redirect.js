// /orders#<code> (also /orders/#<code>): on to the app at the site's root, keeping the
// query (?api=) and the fragment. replace(): the back button skips this page.
const root = new URL(location.pathname.endsWith("/") ? "../" : "./", location.href);
location.replace(`${root.pathname}${location.search}${location.hash}`);
