(function(){
var tip=document.getElementById('tip'),lit=[];
function unlight(){lit.forEach(function(n){n.classList.remove('hl')});lit=[]}
function light(el){unlight();var id=el.getAttribute('data-op');if(id===null)return;
 var sec=el.closest('section');if(!sec)return;
 lit=Array.prototype.slice.call(sec.querySelectorAll('[data-op="'+id+'"]'));
 lit.forEach(function(n){n.classList.add('hl')})}
document.addEventListener('mouseover',function(ev){
 var t=ev.target.closest?ev.target.closest('[data-tip],tr[data-op]'):null;
 if(!t){tip.style.display='none';unlight();return}
 light(t);var text=t.getAttribute('data-tip');
 if(text){tip.textContent=text;tip.style.display='block'}else{tip.style.display='none'}});
document.addEventListener('mousemove',function(ev){
 if(tip.style.display!=='block')return;
 var w=tip.offsetWidth,h=tip.offsetHeight,x=ev.clientX+14,y=ev.clientY+16;
 if(x+w>innerWidth-8)x=Math.max(8,ev.clientX-w-14);
 if(y+h>innerHeight-8)y=Math.max(8,ev.clientY-h-16);
 tip.style.left=x+'px';tip.style.top=y+'px'});
function focus(sec){var bad=sec.querySelector('.op.first');
 var sc=sec.querySelector('.scroll');if(!bad||!sc)return;
 var box=bad.getBBox?bad.getBBox():null;if(box)sc.scrollLeft=Math.max(0,box.x-sc.clientWidth*0.6)}
function show(id){var secs=document.querySelectorAll('section.part');
 for(var i=0;i<secs.length;i++){secs[i].hidden=secs[i].id!==id;if(secs[i].id===id)focus(secs[i])}}
var pick=document.getElementById('pick');
if(pick)pick.addEventListener('change',function(){show(pick.value)});
var first=document.querySelector('section.part');if(first)focus(first);
})();
